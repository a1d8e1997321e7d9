// The MX format registry: one row per element format (see docs/formats.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mfqat::mx {

enum class Family : std::uint8_t { Int, Fp };

// What the element codes beyond the finite range mean.
enum class Specials : std::uint8_t {
  AllFinite,  // every code is a finite number (E3M2, E2M3, E2M1, generic narrow FP, MXINT)
  E4M3,       // S.1111.111 is NaN, no Inf (OCP E4M3)
  Ieee,       // top exponent is Inf (mantissa 0) / NaN (mantissa != 0) (OCP E5M2)
};

inline constexpr int kDefaultBlockSize = 32;
inline constexpr int kMaxBlockSize = 1024;

// One row of the registry. Everything is derived from (family, bits, ebits, mbits, specials) by
// make_fp_format / make_int_format; nothing is typed in by hand.
struct Format {
  std::string name;         // canonical name, e.g. "mxfp8_e4m3", "mxint4", "mxfp5_e2m2"
  Family family = Family::Fp;
  int bits = 0;             // element bits B (sign included)
  int ebits = 0;            // FP exponent bits (0 for INT)
  int mbits = 0;            // FP mantissa bits; INT fraction bits (B-2)
  int bias = 0;             // FP exponent bias (0 for INT)
  int emax = 0;             // emax_elem = floor(log2(max_normal)); the shared exponent is floor(log2(amax)) - emax
  int emin = 0;             // exponent of the smallest normal (FP: 1-bias; INT: 0, the fixed-point binade)
  double max_normal = 0;    // largest finite magnitude
  double min_subnormal = 0; // smallest positive magnitude
  std::uint32_t max_code = 0;  // magnitude code (sign bit clear) of max_normal
  Specials specials = Specials::AllFinite;
  bool builtin = true;      // a named OCP/MXINT row, not a generic mxfpB_eEmM
  int block_size = kDefaultBlockSize;
  std::string description;

  // Packed bytes of one full block: ceil(block_size * bits / 8).
  std::size_t packed_bytes_per_block() const {
    return (static_cast<std::size_t>(block_size) * bits + 7) / 8;
  }
  // Packed bytes of one row of `cols` elements (rows are byte-aligned bit streams).
  std::size_t packed_row_bytes(std::int64_t cols) const {
    return (static_cast<std::size_t>(cols) * bits + 7) / 8;
  }
  std::int64_t blocks_per_row(std::int64_t cols) const {
    return (cols + block_size - 1) / block_size;
  }
  // Bits per weight including the shared 8-bit scale.
  double bits_per_weight() const { return bits + 8.0 / block_size; }
  std::uint32_t code_count() const { return 1u << bits; }
  const char* family_name() const { return family == Family::Int ? "int" : "fp"; }
  const char* specials_name() const;
  Format with_block_size(int bs) const;  // throws std::invalid_argument when bs is out of range
};

// The built-in rows, in display order: OCP FP formats, then MXINT8..2.
const std::vector<Format>& registry();

// Looks up a name: a built-in row, an alias (mxfp8, mxfp6, mxfp4), or a generic "mxfpB_eEmM"
// (E+M+1 = B <= 8, 1 <= E <= 5, all codes finite, bias 2^(E-1)-1). Case-insensitive.
// Throws std::invalid_argument with a one-line message naming the bad name.
Format find_format(std::string_view name, int block_size = kDefaultBlockSize);

// Expands a comma-separated list; the words "int", "fp" and "all" name the built-in families.
std::vector<Format> parse_format_list(std::string_view list, int block_size = kDefaultBlockSize);

// Makes a generic FP row (used by the registry and the generic-name parser).
Format make_fp_format(int ebits, int mbits, Specials specials, std::string name, std::string description);
Format make_int_format(int bits);

}  // namespace mfqat::mx
