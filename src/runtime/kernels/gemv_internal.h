// Internal to src/runtime/kernels/: per-format decoder parameters, the activation layouts and
// the row loops of the fused MX products, shared by the reference loops (reference.cpp), the
// activation preparation (activations.cpp), the dispatch (dispatch.cpp) and the ISA files
// (gemv_avx2.cpp, gemv_avx512.cpp + gemv_fx512.inc). Only the white-box tests include it
// from outside.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#include "mfqat/mx/packed_view.h"  // the decode table, unpack_codes_at
#include "mfqat/runtime/gemv.h"

namespace mfqat::runtime::detail {

// Cache-line-aligned storage for the activation buffers the SIMD loops read with 64-byte loads
// (a misaligned buffer splits every such load across two lines).
template <class T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <class U>
  explicit Aligned64(const Aligned64<U>& /*other*/) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, std::size_t /*n*/) { ::operator delete(p, std::align_val_t{64}); }
  template <class U>
  bool operator==(const Aligned64<U>& /*other*/) const { return true; }
};
template <class T>
using AlignedVec = std::vector<T, Aligned64<T>>;

// Every E8M0 code's scale as fp32 (0: 2^-127, a subnormal; 255: NaN), for the SIMD loops.
struct ScaleTable {
  float v[256];
  ScaleTable();
};
extern const ScaleTable kScales;

// How a block of codes becomes fp32 values (before the block scale).
struct Decoder {
  alignas(32) float lut[256] = {};  // the reference decode of every code (mx::decode_table)
  bool is_int = false;
  int bits = 0, mbits = 0, bias = 0;
  // Fast paths need whole, byte-aligned blocks of 32.
  bool aligned32 = false;
  // 4-bit formats: lut[c] * nib_mul^-1 is a small integer for every c (int8 table for vpshufb).
  bool nibble = false;
  std::int8_t nib[16] = {};
  float nib_mul = 1;
  // INT: value = (sign-extended code) * int_mul.
  float int_mul = 1;
  // B in 2..7 (not 4): code i of an 8-code group of B bytes starts at byte gather_byte[i], bit
  // gather_shift[i] (used to pull codes out with one byte shuffle and a variable shift).
  alignas(32) std::int8_t gather_idx[32] = {};  // byte shuffle: lane i gets bytes gather_byte[i] + 0..3
  alignas(32) std::int32_t gather_shift[8] = {};
  // FP: 2^(1 - bias), the subnormal correction of the arithmetic decode.
  float sub_off = 0;
  // 8-bit FP whose every finite code, moved into an IEEE half with the same exponent field
  // (sign to bit 15, magnitude << (10 - mbits)), reads as 2^-(15 - bias) times its value
  // (E <= 5: E4M3, E5M2, ...): the AVX-512 path converts codes with vcvtph2ps.
  bool half8 = false;
  // FP arithmetic decode valid for every code (no NaN/Inf codes can occur: see finite_codes()).
  static Decoder make(const mx::Format& f);
};

// Rows [r0, r1) of Y = X W^T for n activation rows (n = 1: GEMV).
using RowsFn = void (*)(const Decoder& d, const MxView& w, const float* x, std::int64_t n, float* y, std::int64_t r0,
                        std::int64_t r1);
RowsFn scalar_rows();
RowsFn avx2_rows();  // nullptr when not compiled in

// int8 activations of one vector: per block (of the weight's block size) int8 values and scale.
// For the AVX2 4-bit path, whole blocks of 32 are stored in the order of the packed nibbles
// (`nibble_order`): the first `paired` blocks (a multiple of 8) by pairs, pair (2k, 2k+1) as
// [evens of 2k | evens of 2k+1 | odds of 2k | odds of 2k+1] (16 each: what the low and high
// nibbles of 32 packed bytes give), later whole blocks as [evens | odds]; a partial block last,
// in natural order.
// The AVX-512 path stores groups of 4 blocks the same way ([evens of 4 blocks | odds of 4
// blocks], `group` = 4).
struct Q8Acts {
  AlignedVec<std::int8_t> q;
  std::vector<float> scale;
  std::vector<std::int32_t> sum;  // per block: the sum of its int8 values
  std::int64_t grouped = 0;       // blocks stored in groups of `group`
};
Q8Acts quantize_acts(const float* x, std::int64_t cols, int block_size, bool nibble_order, std::int64_t grouped = 0, int group = 2);
// One block of len activations to int8, in natural order: q = round-half-even(x / s) with
// s = max|x| / 127, and *sum = sum(q). Returns s; a NaN or Inf in the block gives s = NaN and
// q = 0 (so that products with it are NaN), an all-zero block s = 0 and q = 0. Shared by
// quantize_acts (decode's int8 activations) and quantize_rows (the prompt GEMM's).
float quantize_block_q8(const float* x, std::int64_t len, std::int8_t* q, std::int32_t* sum);
// The AVX2 4-bit int8 path's fast loop (8 blocks at a time, 256-bit shuffles over block pairs,
// table values made unsigned by adding q8_offset so that vpmaddubsw needs no sign fix-up) applies
// when offset + max(table) <= 129 (no int16 saturation). Returns the blocks per row it covers.
std::int64_t q8_paired_blocks(const Decoder& d, std::int64_t cols, int block_size);
int q8_offset(const Decoder& d);
// int8 value of a weight code: nib[] for 4-bit, the code itself for MXINT8; value = int * mul.
bool q8_ints(const Decoder& d, std::int8_t* table, float* mul);
using Q8RowsFn = void (*)(const Decoder& d, const MxView& w, const Q8Acts& a, float* y, std::int64_t r0, std::int64_t r1);
Q8RowsFn scalar_q8_rows();
Q8RowsFn avx2_q8_rows();  // nullptr when not compiled in

// How far ahead (bytes of packed weights) the GEMV loops prefetch.
constexpr std::int64_t kPrefetchBytes = 4096;

// AVX-512 (F, BW, VL, DQ, VNNI) paths: run where the CPU has them (cpu_avx512) and the options
// allow; avx512_active(): the CPU has them and the process default (set_avx512) allows.
bool cpu_avx512();  // false when not compiled in
bool cpu_vbmi();    // AVX512-VBMI too
bool avx512_active();
void set_avx512(bool allowed);
// fp32 activations, one vector: which formats have a 512-bit loop and how it wants x.
enum class X512 : std::uint8_t {
  None,    // no 512-bit loop (the AVX2 one runs)
  Nibble,  // 4-bit: per whole block of 32, [16 evens | 16 odds]
  Int8,    // MXINT8: x as it is
  Fp8,     // 8-bit FP with half8: x * 2^(15 - bias)
};
X512 x512_layout(const Decoder& d);
// The activations in that layout (whole blocks; the kernel reads x itself for a partial last
// block): x itself for Int8, else written into xp. nullptr when x * 2^(15 - bias) would overflow
// (then the AVX2 loop runs) or the format has no 512-bit loop.
const float* prepare_x512(const Decoder& d, const float* x, std::int64_t cols, AlignedVec<float>& xp);
using Gemv512Fn = void (*)(const Decoder& d, const MxView& w, const float* xp, const float* x, float* y, std::int64_t r0, std::int64_t r1);
Gemv512Fn avx512_gemv_rows();  // nullptr when not compiled in
Q8RowsFn avx512_q8_rows();     // nullptr when not compiled in
RowsFn avx512_gemm_rows();     // n > 1, every format (rows decoded by the AVX2 decoder); nullptr when not compiled in

// fp32 activations in block fixed point, for the AVX-512 integer loop of the 4-bit formats
// (those with an int8 table: value = nib[code] * nib_mul). Each activation becomes D signed
// base-256 digits (D = fx_digits(): 3 by default, near fp32; 2 for ~15 bits). Per whole block
// of 32 with e = ilogb(max |x|) (x all finite), X = round(x * 2^t), rounded to nearest even,
// t = K + 1 - e when round(max|x| * 2^(K + 1 - e)) <= Xmax, else t = K - e (FxParams: K and
// Xmax per D and table), so |X| <= Xmax. X = d0 + 256 d1 (+ 65536 d2), each digit in int8, for
// vpdpbusd against the unsigned table values, each digit's dot on its own, combined as
// (dot(w, d2) << 16) + (dot(w, d1) << 8) + dot(w, d0) in int32 modulo 2^32; the block's true
// dot sum(nib * X) fits int32 (32 * max|nib| * Xmax < 2^31), so the result is exact. Times
// 2^-t * nib_mul it is the block's dot with x rounded to |x^ - x| <= 2^(-t-1), which is at most
// 2^-(K+1) * max|x| of its block, and about 2^-(K+2) for most blocks (the K + 1 choice).
struct FxActs {
  // Digits of an activation (2 or 3).
  int nd = 3;
  // 32 * nd bytes per block, blocks padded with zero blocks to a multiple of 16; per 4 blocks,
  // from the top digit down, [d_top evens | d_top odds | ... | d0 evens | d0 odds] (64 bytes
  // each, 16 per block: what the low / high nibbles of the 4 blocks' 64 code bytes meet).
  AlignedVec<std::int8_t> digits;
  // Per block 2^-t * nib_mul (0 for an all-zero block), in transposed order in each group of 16.
  AlignedVec<float> scale;
  // Per block (transposed) -offset * sum(X): the unsigned table's correction, modulo 2^32.
  AlignedVec<std::int32_t> corr;
};
// K and Xmax for `digits` digits: Xmax = min(the digits' range 127 * (1 + 256 (+ 65536)),
// (2^31 - 1) / (32 max|nib|)), K = ilogb(Xmax) - 1 (so 2^(K+1) <= Xmax). MXFP4 and MXINT4:
// 2 digits K = 13, Xmax = 32639 (~15 significant bits against the block maximum); 3 digits
// K = 21, Xmax = 5592405 / 8355711 (~23 bits).
struct FxParams {
  int k = 0;
  std::int32_t xmax = 0;
};
FxParams fx_params(const Decoder& d, int digits);
// ilogb of a positive normal float from its bits (-127 for a subnormal: below kFxMinExp).
inline int fx_exponent(float a) { return static_cast<int>((std::bit_cast<std::uint32_t>(a) >> 23) & 0xFF) - 127; }
// 2^p for p in [-126, 127], from its bits.
inline float fx_pow2(int p) { return std::bit_cast<float>(static_cast<std::uint32_t>(p + 127) << 23); }
// The block's shift t (see FxActs) for its largest |x| (positive, normal, finite): with
// amax = m * 2^e, m in [1, 2), t = K + 1 - e when round(m * 2^(K+1)) <= Xmax (exact in fp32).
inline int fx_block_shift(const FxParams& p, float amax) {
  const int e = fx_exponent(amax);
  const float m = std::bit_cast<float>((std::bit_cast<std::uint32_t>(amax) & 0x007FFFFFu) | 0x3F800000u);
  return std::nearbyint(m * fx_pow2(p.k + 1)) <= static_cast<float>(p.xmax) ? p.k + 1 - e : p.k - e;
}
int fx_digits();
void set_fx_digits(int digits);  // 2 or 3
bool fx_supported(const Decoder& d);  // 4-bit with an int8 table, whole blocks of 32
// The smallest block maximum the fixed-point loop takes: ilogb(max|x|) >= kFxMinExp (its
// 2^-t * nib_mul stays a normal fp32).
constexpr int kFxMinExp = -100;
// Fills a; false when x has a non-finite value (the fp32 loops then run, propagating it) or a
// nonzero block whose largest |x| lies below 2^kFxMinExp.
using FxPrepareFn = bool (*)(const Decoder& d, const float* x, std::int64_t cols, FxActs& a);
using FxRowsFn = void (*)(const Decoder& d, const MxView& w, const FxActs& a, const float* x, float* y, std::int64_t r0, std::int64_t r1);
FxPrepareFn avx512_fx_prepare();  // nullptr when not compiled in; the process default's digits
using FxPrepareDigitsFn = bool (*)(const Decoder& d, const float* x, std::int64_t cols, FxActs& a, int digits);
FxPrepareDigitsFn avx512_fx_prepare_digits();  // nullptr when not compiled in
FxRowsFn avx512_fx_rows();        // nullptr when not compiled in; vpermb when vbmi_active()
FxRowsFn avx512_fx_rows(bool vbmi);  // nullptr when not compiled in
bool fixed_point_acts();
void set_fixed_point_acts(bool allowed);
bool vbmi_active();
void set_vbmi(bool allowed);

// The partial last block of a row (its cols % 32 elements after the whole blocks of 32), as the
// reference computes it, for the SIMD loops: scale * dot(decoded codes, x) with x in natural
// order; with int8 activations float(int dot) * (scale * mul * activation scale).
float partial_block(const Decoder& d, const mx::Format& f, const std::uint8_t* row, std::uint8_t scale, const float* x, std::int64_t cols);
float partial_block_q8(const mx::Format& f, const std::int8_t* table, float mul, const std::uint8_t* row, std::uint8_t scale,
                       const Q8Acts& a, std::int64_t cols);

// Decodes row r of w (all cols) into out[cols], reference path: lut[code] * scale.
void decode_row_scalar(const Decoder& d, const MxView& w, std::int64_t r, float* out);

}  // namespace mfqat::runtime::detail

namespace mfqat::runtime::detail {
// AVX2 row decode (whole blocks in registers, tail by the reference); nullptr when not compiled.
using DecodeRowFn = void (*)(const Decoder& d, const MxView& w, std::int64_t r, float* out);
DecodeRowFn avx2_decode_row();
}  // namespace mfqat::runtime::detail
