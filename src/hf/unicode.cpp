// UTF-8 validation and WHATWG-style repair, the GPT-2 byte-level alphabet, ICU normalization.
#include <unicode/normalizer2.h>
#include <unicode/locid.h>
#include <unicode/unistr.h>

#include <string>

#include "mfqat/hf/tokenizer.h"
#include "mfqat/hf/unicode.h"
#include "text.h"

namespace mfqat::hf {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// The WHATWG UTF-8 decoder, one step: at s[i], returns the length of a well-formed character
// (> 0), or -(length of the maximal ill-formed subpart) (< 0; at least 1 byte), and sets
// `truncated` when the subpart is a valid-so-far sequence cut off by the end of the input.
int step(std::string_view s, std::size_t i, bool& truncated) {
  truncated = false;
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  int need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  std::size_t j = i + 1;
  for (int got = 0; got < need; ++got, ++j) {
    if (j >= s.size()) {
      truncated = true;
      return -static_cast<int>(j - i);
    }
    const auto d = static_cast<unsigned char>(s[j]);
    if (d < lo || d > hi) return -static_cast<int>(j - i);
    lo = 0x80;
    hi = 0xBF;
  }
  return static_cast<int>(j - i);
}

}  // namespace

std::size_t find_invalid_utf8(std::string_view s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      std::uint64_t w;
      __builtin_memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    bool truncated;
    const int k = step(s, i, truncated);
    if (k < 0) return i;
    i += static_cast<std::size_t>(k);
  }
  return kValidUtf8;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    bool truncated;
    const int k = step(s, i, truncated);
    if (k > 0) {
      out.append(s.data() + i, static_cast<std::size_t>(k));
      i += static_cast<std::size_t>(k);
    } else {
      out += kReplacement;
      i += static_cast<std::size_t>(-k);
    }
  }
  return out;
}

std::size_t complete_utf8_prefix(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    bool truncated;
    const int k = step(s, i, truncated);
    if (k < 0 && truncated) return i;
    i += static_cast<std::size_t>(k > 0 ? k : -k);
  }
  return s.size();
}

namespace detail {

std::uint32_t next_codepoint(std::string_view s, std::size_t& i) {
  const auto c = static_cast<unsigned char>(s[i]);
  const std::size_t n = utf8_len(c);
  if (n == 1 || i + n > s.size()) {
    ++i;
    return c;
  }
  std::uint32_t cp = c & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (std::size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_white_space(std::uint32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  if (cp < 0x85) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

namespace {
struct ByteTables {
  std::array<std::uint32_t, 256> to_cp{};
  std::array<std::string, 256> to_utf8{};
  ByteTables() {
    std::uint32_t extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_cp[b] = printable ? static_cast<std::uint32_t>(b) : 256 + extra++;
      append_utf8(to_utf8[b], to_cp[b]);
    }
  }
};
const ByteTables& tables() {
  static const ByteTables t;
  return t;
}
}  // namespace

const std::array<std::uint32_t, 256>& byte_to_codepoint() { return tables().to_cp; }
const std::array<std::string, 256>& byte_to_utf8() { return tables().to_utf8; }

int codepoint_to_byte(std::uint32_t cp) {
  if (cp < 256) {
    const bool printable = (cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255);
    return printable ? static_cast<int>(cp) : -1;
  }
  if (cp < 256 + 68) {  // 68 bytes are not printable: 0-32, 127-160, 173
    static const auto inverse = [] {
      std::array<int, 68> inv{};
      const auto& t = byte_to_codepoint();
      for (int b = 0; b < 256; ++b)
        if (t[b] >= 256) inv[t[b] - 256] = b;
      return inv;
    }();
    return inverse[cp - 256];
  }
  return -1;
}

bool byte_level_to_bytes(std::string_view token, std::string& out) {
  std::size_t i = 0;
  while (i < token.size()) {
    const int b = codepoint_to_byte(next_codepoint(token, i));
    if (b < 0) return false;
    out += static_cast<char>(b);
  }
  return true;
}

std::string quote(std::string_view s, std::size_t max) {
  std::string out = "\"";
  std::size_t i = 0;
  while (i < s.size() && i < max) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7F) {
      static const char* hex = "0123456789abcdef";
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
  if (i < s.size()) out += "...";
  out += '"';
  return sanitize_utf8(out);
}

namespace {
bool all_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}
}  // namespace

std::string unicode_normalize(std::string_view text, NormForm form) {
  if (all_ascii(text)) return std::string(text);
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* norm = nullptr;
  switch (form) {
    case NormForm::NFC: norm = icu::Normalizer2::getNFCInstance(status); break;
    case NormForm::NFD: norm = icu::Normalizer2::getNFDInstance(status); break;
    case NormForm::NFKC: norm = icu::Normalizer2::getNFKCInstance(status); break;
    case NormForm::NFKD: norm = icu::Normalizer2::getNFKDInstance(status); break;
  }
  if (U_FAILURE(status) || norm == nullptr) throw TokenizerError("ICU normalizer unavailable: " + std::string(u_errorName(status)));
  const icu::UnicodeString in = icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  if (norm->isNormalized(in, status) && U_SUCCESS(status)) return std::string(text);
  status = U_ZERO_ERROR;
  const icu::UnicodeString outu = norm->normalize(in, status);
  if (U_FAILURE(status)) throw TokenizerError("ICU normalization failed: " + std::string(u_errorName(status)));
  std::string out;
  outu.toUTF8String(out);
  return out;
}

std::string unicode_lowercase(std::string_view text) {
  if (all_ascii(text)) {
    std::string out(text);
    for (char& c : out)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
  }
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  u.toLower(icu::Locale::getRoot());
  std::string out;
  u.toUTF8String(out);
  return out;
}

}  // namespace detail
}  // namespace mfqat::hf
