#include "mfqat/mx/format.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <stdexcept>

namespace mfqat::mx {

const char* Format::specials_name() const {
  switch (specials) {
    case Specials::AllFinite: return "all-finite";
    case Specials::E4M3: return "nan-only";
    case Specials::Ieee: return "inf+nan";
  }
  return "?";
}

Format Format::with_block_size(int bs) const {
  if (bs < 1 || bs > kMaxBlockSize) {
    throw std::invalid_argument("block size " + std::to_string(bs) + " is out of range 1.." +
                                std::to_string(kMaxBlockSize));
  }
  Format f = *this;
  f.block_size = bs;
  return f;
}

Format make_fp_format(int ebits, int mbits, Specials specials, std::string name, std::string description) {
  Format f;
  f.name = std::move(name);
  f.description = std::move(description);
  f.family = Family::Fp;
  f.ebits = ebits;
  f.mbits = mbits;
  f.bits = 1 + ebits + mbits;
  f.bias = (1 << (ebits - 1)) - 1;
  f.specials = specials;
  f.emin = 1 - f.bias;
  const int top_field = (1 << ebits) - 1;
  const std::uint32_t mant_mask = (1u << mbits) - 1;
  std::uint32_t max_code = 0;
  switch (specials) {
    case Specials::AllFinite: max_code = (static_cast<std::uint32_t>(top_field) << mbits) | mant_mask; break;
    case Specials::E4M3: max_code = ((static_cast<std::uint32_t>(top_field) << mbits) | mant_mask) - 1; break;
    case Specials::Ieee: max_code = (static_cast<std::uint32_t>(top_field - 1) << mbits) | mant_mask; break;
  }
  f.max_code = max_code;
  const int max_field = static_cast<int>(max_code >> mbits);
  const double max_frac = static_cast<double>(max_code & mant_mask) / (1 << mbits);
  f.emax = max_field - f.bias;
  f.max_normal = std::ldexp(1.0 + max_frac, f.emax);
  f.min_subnormal = std::ldexp(1.0, f.emin - mbits);
  return f;
}

Format make_int_format(int bits) {
  Format f;
  f.name = "mxint" + std::to_string(bits);
  f.family = Family::Int;
  f.bits = bits;
  f.mbits = bits - 2;
  f.emin = 0;
  f.emax = 0;
  f.max_code = (1u << (bits - 1)) - 1;
  f.max_normal = std::ldexp(static_cast<double>(f.max_code), -(bits - 2));
  f.min_subnormal = std::ldexp(1.0, -(bits - 2));
  f.specials = Specials::AllFinite;
  f.description = bits == 2 ? "ternary {-1,0,1}, two's complement"
                            : "fixed point 1." + std::to_string(bits - 2) + ", two's complement, symmetric";
  return f;
}

const std::vector<Format>& registry() {
  static const std::vector<Format> rows = [] {
    std::vector<Format> r;
    r.push_back(make_fp_format(4, 3, Specials::E4M3, "mxfp8_e4m3", "OCP FP8 E4M3, S.1111.111 = NaN"));
    r.push_back(make_fp_format(5, 2, Specials::Ieee, "mxfp8_e5m2", "OCP FP8 E5M2, IEEE-like Inf/NaN"));
    r.push_back(make_fp_format(3, 2, Specials::AllFinite, "mxfp6_e3m2", "OCP FP6 E3M2"));
    r.push_back(make_fp_format(2, 3, Specials::AllFinite, "mxfp6_e2m3", "OCP FP6 E2M3"));
    r.push_back(make_fp_format(2, 1, Specials::AllFinite, "mxfp4_e2m1", "OCP FP4 E2M1"));
    for (int b = 8; b >= 2; --b) r.push_back(make_int_format(b));
    return r;
  }();
  return rows;
}

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// Parses a non-negative decimal integer occupying all of s; -1 on failure.
int parse_small_int(std::string_view s) {
  if (s.empty() || s.size() > 3) return -1;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

// "mxfpB_eEmM" -> generic row; nullopt-style: returns false when the name is not of that shape.
bool parse_generic_fp(const std::string& n, Format* out, std::string* why) {
  if (n.rfind("mxfp", 0) != 0) return false;
  const auto us = n.find("_e");
  const auto m = n.find('m', us == std::string::npos ? n.size() : us);
  if (us == std::string::npos || m == std::string::npos) return false;
  const int b = parse_small_int(std::string_view(n).substr(4, us - 4));
  const int e = parse_small_int(std::string_view(n).substr(us + 2, m - us - 2));
  const int mm = parse_small_int(std::string_view(n).substr(m + 1));
  if (b < 0 || e < 0 || mm < 0) return false;
  if (e + mm + 1 != b) {
    *why = "E+M+1 must equal B";
    return true;
  }
  if (b > 8) {
    *why = "at most 8 bits";
    return true;
  }
  if (e < 1 || e > 5) {
    // E >= 6 has bias >= 31: elements at the 2^-127 scale floor would fall below fp32's subnormals.
    *why = "exponent bits must be 1..5";
    return true;
  }
  *out = make_fp_format(e, mm, Specials::AllFinite, n,
                        "generic FP E" + std::to_string(e) + "M" + std::to_string(mm) + ", all codes finite");
  out->builtin = false;
  return true;
}

}  // namespace

Format find_format(std::string_view name, int block_size) {
  std::string n = lower(name);
  if (n == "mxfp8") n = "mxfp8_e4m3";
  if (n == "mxfp6") n = "mxfp6_e2m3";
  if (n == "mxfp4") n = "mxfp4_e2m1";
  for (const Format& f : registry()) {
    if (f.name == n) return f.with_block_size(block_size);
  }
  Format g;
  std::string why;
  if (parse_generic_fp(n, &g, &why)) {
    if (!why.empty()) throw std::invalid_argument("bad format name '" + std::string(name) + "': " + why);
    return g.with_block_size(block_size);
  }
  throw std::invalid_argument("unknown format '" + std::string(name) +
                              "' (try `mfqat formats`; generic FP formats are mxfpB_eEmM)");
}

std::vector<Format> parse_format_list(std::string_view list, int block_size) {
  std::vector<Format> out;
  std::size_t pos = 0;
  while (pos <= list.size()) {
    auto comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    const std::string item = lower(list.substr(pos, comma - pos));
    pos = comma + 1;
    if (item.empty()) continue;
    if (item == "int" || item == "fp" || item == "all") {
      for (const Format& f : registry()) {
        if (item == "all" || (item == "int") == (f.family == Family::Int)) out.push_back(f.with_block_size(block_size));
      }
    } else {
      out.push_back(find_format(item, block_size));
    }
  }
  if (out.empty()) throw std::invalid_argument("empty format list '" + std::string(list) + "'");
  return out;
}

}  // namespace mfqat::mx
