// Block quantization of row-major fp32 matrices, blocks along the last (column) axis.
#pragma once

#include <cstdint>
#include <vector>

#include "mfqat/mx/codec.h"
#include "mfqat/mx/format.h"

namespace mfqat::mx {

struct QuantOptions {
  Rounding rounding = Rounding::NearestEven;
  std::uint64_t seed = 0;  // stochastic rounding: the draw for element i is a hash of (seed, i)
};

// Instruction-set paths. All produce identical bits; Auto picks the best one this CPU runs.
enum class Isa : std::uint8_t { Auto, Scalar, Avx2 };
const char* isa_name(Isa isa);
bool isa_supported(Isa isa);
// The path used when Auto is asked for: MFQAT_ISA=scalar|avx2 in the environment, else the best.
Isa default_isa();

// Packed MX tensor: per row, a little-endian bit stream of B-bit codes (element i at bits
// [i*B, (i+1)*B) of the row), rows padded to whole bytes; one E8M0 byte per block.
struct PackedMatrix {
  Format format;
  std::int64_t rows = 0, cols = 0;
  std::vector<std::uint8_t> elements;  // rows * format.packed_row_bytes(cols)
  std::vector<std::uint8_t> scales;    // rows * format.blocks_per_row(cols)
};

// x: rows*cols floats. elements: rows*packed_row_bytes(cols). scales: rows*blocks_per_row(cols).
void quantize(const Format& f, const float* x, std::int64_t rows, std::int64_t cols, std::uint8_t* elements,
              std::uint8_t* scales, const QuantOptions& opt = {}, Isa isa = Isa::Auto);
PackedMatrix quantize(const Format& f, const float* x, std::int64_t rows, std::int64_t cols,
                      const QuantOptions& opt = {}, Isa isa = Isa::Auto);

void dequantize(const Format& f, const std::uint8_t* elements, const std::uint8_t* scales, std::int64_t rows,
                std::int64_t cols, float* out, Isa isa = Isa::Auto);
std::vector<float> dequantize(const PackedMatrix& m, Isa isa = Isa::Auto);

// Fused quantize+dequantize, fp32 -> fp32; bit-identical to dequantize(quantize(x)).
// `saturated` (optional, rows*cols bytes) gets 1 where the element was clipped to max_normal.
// In-place (out == x) is allowed.
void fake_quantize(const Format& f, const float* x, std::int64_t rows, std::int64_t cols, float* out,
                   const QuantOptions& opt = {}, std::uint8_t* saturated = nullptr, Isa isa = Isa::Auto);

// Bit-stream packing of B-bit codes (one code per byte in `codes`).
void pack_codes(const std::uint8_t* codes, std::int64_t n, int bits, std::uint8_t* out);
void unpack_codes(const std::uint8_t* in, std::int64_t n, int bits, std::uint8_t* codes);

}  // namespace mfqat::mx
