// UTF-8 helpers shared by the tokenizer, its CLI and its tests.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mfqat::hf {

inline constexpr std::size_t kValidUtf8 = static_cast<std::size_t>(-1);

// Offset of the first byte that starts an ill-formed sequence (RFC 3629: no overlongs, no
// surrogates, nothing above U+10FFFF, no truncated sequence at the end), or kValidUtf8.
std::size_t find_invalid_utf8(std::string_view bytes);
inline bool is_valid_utf8(std::string_view bytes) { return find_invalid_utf8(bytes) == kValidUtf8; }

// Replaces every maximal ill-formed subpart with U+FFFD: the WHATWG Encoding Standard's UTF-8
// decoder, i.e. what JavaScript's TextDecoder (and so the JS oracle) makes of the same bytes.
std::string sanitize_utf8(std::string_view bytes);

// Length of the longest prefix that does not end inside a sequence that is still valid so far but
// incomplete: bytes past it may become a character once more bytes arrive.
std::size_t complete_utf8_prefix(std::string_view bytes);

}  // namespace mfqat::hf
