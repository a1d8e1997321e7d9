// Internal: parameters and kernel table shared by the scalar and SIMD paths.
// The scalar element math here is the reference; the SIMD files re-state it lane-wise and the
// tests check that every path agrees bit for bit.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>

#include "mfqat/mx/quantize.h"

namespace mfqat::mx::detail {

// Everything a kernel needs, precomputed from a Format.
struct KernelParams {
  int bits = 0;
  int mbits = 0;
  int emin = 0;           // unbiased exponent of the smallest normal (INT: 0)
  int emax = 0;
  int block_size = 32;
  bool is_int = false;
  std::uint32_t max_code = 0;   // magnitude code of max_normal
  float max_normal = 0;
  alignas(32) float lut[256] = {};  // decoded value of every code (without the block scale)
};
KernelParams make_params(const Format& f);

// Where in the tensor a run of elements starts, for stochastic rounding.
struct RoundCtx {
  Rounding mode = Rounding::NearestEven;
  std::uint64_t seed = 0;
  std::uint64_t index0 = 0;  // flat index (row*cols + col) of the run's first element
};

// A run is n consecutive elements of one row starting at a block boundary; blocks of
// block_size, the last one possibly partial. Packed output starts byte-aligned.
using FakeQuantFn = void (*)(const KernelParams&, const float* x, float* y, std::int64_t n, std::uint8_t* sat,
                             const RoundCtx&);
using QuantizeFn = void (*)(const KernelParams&, const float* x, std::int64_t n, std::uint8_t* packed,
                            std::uint8_t* scales, const RoundCtx&);
using DequantizeFn = void (*)(const KernelParams&, const std::uint8_t* packed, const std::uint8_t* scales,
                              std::int64_t n, float* y);

struct KernelTable {
  FakeQuantFn fake_quantize;
  QuantizeFn quantize;
  DequantizeFn dequantize;
};
const KernelTable& scalar_kernels();
const KernelTable* avx2_kernels();  // nullptr when not compiled in
const KernelTable& kernels_for(Isa isa);

// Scalar reference for one block (len <= kMaxBlockSize, round-to-nearest-even unless told):
// writes one code per byte and returns the E8M0 scale byte. Converters use it for the blocks
// they cannot map by table, so that their output is the quantizer's by construction.
std::uint8_t quantize_block_codes(const KernelParams& p, const float* x, std::int64_t len, std::uint8_t* codes,
                                  const RoundCtx& rc = {});

// Cuts a rows x cols matrix into runs of whole blocks (along rows, of about 64K elements) that
// start on a byte of every packed stream involved (element widths bits_a and bits_b), and calls
// fn(row, first block, first column, element count) for each run, spread over the thread pool.
using RunFn = std::function<void(std::int64_t row, std::int64_t blk, std::int64_t col, std::int64_t n)>;
void for_each_run(int block_size, int bits_a, int bits_b, std::int64_t rows, std::int64_t cols, const RunFn& fn);

// Bit-stream packing at a bit offset. Codes are written in order: a byte that a code starts is
// assigned (clearing its padding bits), later codes OR into it, so runs must be written in order
// and every run must start on a byte boundary or right after the previous run.
void pack_codes_at(const std::uint8_t* codes, std::int64_t n, int bits, std::uint8_t* out, std::int64_t bitpos);
void unpack_codes_at(const std::uint8_t* in, std::int64_t bitpos, std::int64_t n, int bits, std::uint8_t* codes);

// ---- scalar element math (the reference) ----

inline std::uint32_t f2u(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float u2f(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// 2^e as float for e in [-127, 127] (2^-127 is subnormal).
inline float pow2f(int e) { return e == -127 ? u2f(0x00400000u) : u2f(static_cast<std::uint32_t>(e + 127) << 23); }

// lowbias32 integer hash (Chris Wellons); a bijection on 32 bits.
inline std::uint32_t mix32(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}
inline std::uint32_t seed_key_lo(std::uint64_t seed) { return static_cast<std::uint32_t>(seed) ^ 0x6a09e667u; }
inline std::uint32_t seed_key_hi(std::uint64_t seed) { return mix32(static_cast<std::uint32_t>(seed >> 32) ^ 0xbb67ae85u); }
// The 24-bit uniform draw for flat element index i.
inline std::uint32_t stochastic_draw(std::uint64_t seed, std::uint64_t i) {
  const std::uint32_t t = mix32(static_cast<std::uint32_t>(i >> 32) ^ seed_key_lo(seed));
  return mix32(static_cast<std::uint32_t>(i) ^ t ^ seed_key_hi(seed)) >> 8;
}

// Result of quantizing one magnitude a = |x| / 2^X (finite, >= 0, < 2^(emax+1)).
struct ElemResult {
  std::uint32_t code;  // magnitude code, clamped to max_code
  float value;         // its value (without scale), min(.., max_normal)
  bool saturated;      // the unclamped code exceeded max_code
};

// Unified FP/INT rounding: with k = max(exponent(a), emin), the grid step is 2^(k-m);
// n = a / 2^(k-m) is exact, r = round(n) is an integer in [0, 2^(m+1)], and the code is
// ((k - emin) << m) + r (a carry into the next binade lands on the right code by itself).
// INT formats are the case emin = emax = 0.
inline ElemResult quantize_magnitude(const KernelParams& p, float a, Rounding mode, std::uint32_t rand24) {
  const int ef = static_cast<int>(f2u(a) >> 23);
  const int kf = ef > p.emin + 127 ? ef : p.emin + 127;
  const float n = a * u2f(static_cast<std::uint32_t>(254 + p.mbits - kf) << 23);
  float r;
  if (mode == Rounding::NearestEven) {
    r = __builtin_nearbyintf(n);
  } else {
    const float t = __builtin_truncf(n);
    const float frac = n - t;
    if (mode == Rounding::NearestAway) {
      r = frac >= 0.5f ? t + 1.0f : t;
    } else {
      r = frac > static_cast<float>(rand24) * 0x1p-24f ? t + 1.0f : t;
    }
  }
  const std::uint32_t code = (static_cast<std::uint32_t>(kf - 127 - p.emin) << p.mbits) +
                             static_cast<std::uint32_t>(static_cast<std::int32_t>(r));
  float value = r * u2f(static_cast<std::uint32_t>(kf - p.mbits) << 23);
  ElemResult res;
  res.saturated = code > p.max_code;
  res.code = res.saturated ? p.max_code : code;
  res.value = value < p.max_normal ? value : p.max_normal;
  return res;
}

// Signed code from a magnitude code and the input's sign.
inline std::uint32_t sign_code(const KernelParams& p, std::uint32_t mag, bool neg) {
  if (!neg) return mag;
  if (p.is_int) return (0u - mag) & ((1u << p.bits) - 1);
  return mag | (1u << (p.bits - 1));
}

}  // namespace mfqat::mx::detail
