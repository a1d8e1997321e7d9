// Slice-and-Scale: derive a lower MX format of the same family from packed MX data, on the bits.
#pragma once

#include <cstdint>
#include <string>

#include "mfqat/mx/quantize.h"

namespace mfqat::convert {

// Empty when src -> dst can be sliced; otherwise the one-line reason (going up in precision,
// crossing families, a different block size). Callers add their own remedy (the CLI: --via-float).
std::string slice_refusal(const mx::Format& src, const mx::Format& dst);

struct SliceStats {
  std::int64_t blocks = 0;
  std::int64_t table_blocks = 0;    // mapped by the per-pair table (scale byte shift + code table)
  std::int64_t requant_blocks = 0;  // non-canonical blocks re-derived through fp32 (see docs/slice-and-scale.md)
};

// Packed -> packed. The result equals quantize(dequantize(src)) in dst (round-to-nearest-even),
// bit for bit, for every block. Throws std::invalid_argument when slice_refusal() is not empty.
void slice(const mx::Format& src, const std::uint8_t* elements, const std::uint8_t* scales, std::int64_t rows,
           std::int64_t cols, const mx::Format& dst, std::uint8_t* out_elements, std::uint8_t* out_scales,
           SliceStats* stats = nullptr, mx::Isa isa = mx::Isa::Auto);
mx::PackedMatrix slice(const mx::PackedMatrix& src, const mx::Format& dst, SliceStats* stats = nullptr,
                       mx::Isa isa = mx::Isa::Auto);

// Any format to any format by dequantize + quantize (the --via-float path).
mx::PackedMatrix via_float(const mx::PackedMatrix& src, const mx::Format& dst,
                           mx::Rounding rounding = mx::Rounding::NearestEven);

}  // namespace mfqat::convert
