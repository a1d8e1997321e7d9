// Internal text helpers: UTF-8 stepping, the GPT-2 byte-level alphabet, Unicode normalization.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mfqat::hf::detail {

// Length of the UTF-8 sequence that starts with lead byte `c` (1 for bytes that cannot start one).
inline std::size_t utf8_len(unsigned char c) {
  if (c < 0xC0) return 1;
  if (c < 0xE0) return 2;
  if (c < 0xF0) return 3;
  return 4;
}

// Decodes the (valid) character at s[i] and advances i.
std::uint32_t next_codepoint(std::string_view s, std::size_t& i);
void append_utf8(std::string& out, std::uint32_t cp);

// Unicode White_Space (what Rust's char::is_whitespace and the patterns' \s match).
bool is_white_space(std::uint32_t cp);

// GPT-2 bytes_to_unicode(): byte -> code point of its printable stand-in.
const std::array<std::uint32_t, 256>& byte_to_codepoint();
// The stand-in as UTF-8, per byte.
const std::array<std::string, 256>& byte_to_utf8();
// Inverse: code point -> byte, or -1 when the code point is not in the alphabet.
int codepoint_to_byte(std::uint32_t cp);
// Maps a byte-level token string back to bytes; false when some character is not in the alphabet.
bool byte_level_to_bytes(std::string_view token, std::string& out);

// JSON-style quoted, escaped, at most `max` bytes of `s` (for one-line messages).
std::string quote(std::string_view s, std::size_t max = 80);

enum class NormForm { NFC, NFD, NFKC, NFKD };
// ICU normalization of valid UTF-8 (ASCII-only text is returned unchanged without calling ICU).
std::string unicode_normalize(std::string_view text, NormForm form);
// Full Unicode lowercase (root locale), as JavaScript's toLowerCase / Rust's to_lowercase.
std::string unicode_lowercase(std::string_view text);

}  // namespace mfqat::hf::detail
