// AVX-512 paths of the fused MX GEMV (F + BW + VL + DQ + VNNI, 512-bit vectors; compiled with
// per-function target attributes and chosen at run time, like the AVX2 file). Decode is
// compute-bound with 256-bit vectors on the machines we measured (docs/perf.md), so these
// loops do the same work with half the instructions and fewer of them per weight:
//
// fp32 activations, one vector (decode):
//   4-bit formats: 16 bytes of codes -> 16 dwords (vpmovzxbd); the low nibble of each dword
//     indexes a 16-entry fp32 table with vpermps (which reads only the index's low 4 bits), the
//     high nibble after one shift: the even and the odd elements of the block, multiplied by the
//     activations stored per block as [16 evens | 16 odds] (prepared once per call).
//   MXINT8: vpmovsxbd + vcvtdq2ps.
//   FP8 (E <= 5 exponent bits): each code is moved into an IEEE half with the same exponent
//     field (sign to bit 15, the 7 magnitude bits to bits 10-M+...) and converted by vcvtph2ps,
//     exact for normal and subnormal codes; the value is 2^(15 - bias) times the true one, a
//     factor folded into the prepared activations (exact: a power of two).
//   Per block: two products into one partial sum, times the block scale into the row sum.
// int8 activations (opt-in): vpdpbusd (u8 x s8 -> int32):
//   4-bit: 64 bytes = 4 blocks per load; the nibbles go through a 512-bit vpshufb into an
//     unsigned table (value + offset); the activations of 4 blocks are stored as
//     [evens b0..b3 | odds b0..b3]; -offset * sum(x) per block is added in int32 (exact).
//   MXINT8: w + 128 (xor 0x80) is the unsigned operand, -128 * sum(x) the correction.
//   16 blocks are reduced together (a 4 x 4 transpose-add) so that one correction add, one
//   convert and one FMA with 16 block scales serve them all.
// GCC 12's AVX-512 headers build some results from _mm512_undefined_*() and then warn that
// their own '__Y' may be used uninitialized (a known false positive, GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gemv_internal.h"
#include "mfqat/mx/codec.h"

#define MFQAT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define MFQAT_AVX512_VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,avx2,fma,f16c")))

namespace mfqat::runtime::detail {

namespace {

// NOLINTBEGIN(performance-no-int-to-ptr)
// A prefetch hint `ahead` bytes on in the weight stream; the address may lie past the matrix (a
// harmless hint), so it is formed in integers, not by pointer arithmetic.
inline void prefetch_at(const std::uint8_t* p, std::int64_t ahead) {
  _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p) + static_cast<std::uintptr_t>(ahead)), _MM_HINT_T0);
}
// NOLINTEND(performance-no-int-to-ptr)
inline void prefetch_ahead(const std::uint8_t* p) { prefetch_at(p, kPrefetchBytes); }

// E8M0 bytes of 16 blocks -> their scales as fp32 (e = 0: 2^-127, a subnormal; e = 255: NaN),
// equal to kScales.v[e].
MFQAT_AVX512 inline __m512 e8m0x16(__m128i bytes) {
  const __m512i e = _mm512_cvtepu8_epi32(bytes);
  __m512i bits = _mm512_slli_epi32(e, 23);
  bits = _mm512_mask_mov_epi32(bits, _mm512_cmpeq_epi32_mask(e, _mm512_setzero_si512()), _mm512_set1_epi32(0x00400000));
  bits = _mm512_mask_mov_epi32(bits, _mm512_cmpeq_epi32_mask(e, _mm512_set1_epi32(255)), _mm512_set1_epi32(0x7FC00000));
  return _mm512_castsi512_ps(bits);
}

// ---- fp32 activations ----

// Block b's 32 weights (without scale) times its 32 prepared activations: the partial sums.
struct Fp32Block {
  X512 kind;
  __m512 lut;
  __m512i sign_sel, m7f;
  __m128i mag_shift;
  MFQAT_AVX512 __m512 operator()(const std::uint8_t* row, const float* xp, std::int64_t b) const {
    const float* xb = xp + b * 32;
    __m512 v0, v1;
    if (kind == X512::Nibble) {
      const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + b * 16)));
      v0 = _mm512_permutexvar_ps(idx, lut);                         // evens: low nibbles
      v1 = _mm512_permutexvar_ps(_mm512_srli_epi32(idx, 4), lut);  // odds: high nibbles
    } else if (kind == X512::Int8) {
      v0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + b * 32))));
      v1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + b * 32 + 16))));
    } else {  // FP8 -> IEEE half: sign to bit 15, magnitude << (10 - M)
      const __m512i c = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + b * 32)));
      const __m512i h = _mm512_ternarylogic_epi32(sign_sel, _mm512_slli_epi16(c, 8), _mm512_sll_epi16(_mm512_and_si512(c, m7f), mag_shift), 0xCA);
      v0 = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
      v1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
    }
    return _mm512_fmadd_ps(v1, _mm512_loadu_ps(xb + 16), _mm512_mul_ps(v0, _mm512_loadu_ps(xb)));
  }
};

MFQAT_AVX512 void gemv_rows_512(const Decoder& d, const MxView& w, const float* xp, const float* x, float* y, std::int64_t r0,
                                std::int64_t r1) {
  const mx::Format& f = *w.format;
  const std::int64_t nb = f.blocks_per_row(w.cols), full = w.cols / 32, cols = w.cols;
  const std::int64_t rb = static_cast<std::int64_t>(f.packed_row_bytes(cols));
  const X512 kind = x512_layout(d);
  const Fp32Block block{kind, _mm512_loadu_ps(d.lut), _mm512_set1_epi16(static_cast<short>(0x8000)), _mm512_set1_epi16(0x7F),
                        _mm_cvtsi32_si128(10 - d.mbits)};
  const float m = kind == X512::Int8 ? d.int_mul : 1.0f;
  const std::int64_t bpb = kind == X512::Nibble ? 16 : 32;  // bytes per block
  for (std::int64_t r = r0; r < r1; ++r) {
    const std::uint8_t* row = w.elements + r * rb;
    const std::uint8_t* sc = w.scales + r * nb;
    // four blocks per step into four accumulators (the FMA latency, not its throughput, would
    // bound one or two)
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    std::int64_t b = 0;
    for (; b + 4 <= full; b += 4) {
      for (std::int64_t o = 0; o < 4 * bpb; o += 64) prefetch_ahead(row + b * bpb + o);
      for (int k = 0; k < 4; ++k) acc[k] = _mm512_fmadd_ps(block(row, xp, b + k), _mm512_set1_ps(kScales.v[sc[b + k]] * m), acc[k]);
    }
    for (; b < full; ++b) acc[b & 3] = _mm512_fmadd_ps(block(row, xp, b), _mm512_set1_ps(kScales.v[sc[b]] * m), acc[b & 3]);
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
    if (full < nb) sum += partial_block(d, f, row, sc[full], x, cols);  // the reference, natural x
    y[r] = sum;
  }
}

// ---- fp32 activations, several vectors (prefill): Y[j, r] = sum_c W[r, c] X[j, c] ----
// Each weight row is decoded once into an L1 scratch (the AVX2 row decoder), then multiplied
// by 8 (then 1) activation rows at a time with 16-wide FMAs, every output in the same order.
MFQAT_AVX512 void gemm_rows_512(const Decoder& d, const MxView& w, const float* x, std::int64_t n, float* y, std::int64_t r0,
                                std::int64_t r1) {
  const std::int64_t cols = w.cols, c16 = cols / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (cols - c16)) - 1);
  thread_local AlignedVec<float> buf;
  buf.resize(static_cast<std::size_t>(cols));
  const DecodeRowFn decode = avx2_decode_row();
  for (std::int64_t r = r0; r < r1; ++r) {
    decode(d, w, r, buf.data());
    const float* wr = buf.data();
    std::int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      __m512 a[8];
      for (auto& v : a) v = _mm512_setzero_ps();
      for (std::int64_t c = 0; c < c16; c += 16) {
        const __m512 wv = _mm512_load_ps(wr + c);
        for (int k = 0; k < 8; ++k) a[k] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + (j + k) * cols + c), a[k]);
      }
      if (tail) {
        const __m512 wv = _mm512_maskz_loadu_ps(tail, wr + c16);
        for (int k = 0; k < 8; ++k) a[k] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(tail, x + (j + k) * cols + c16), a[k]);
      }
      for (int k = 0; k < 8; ++k) y[(j + k) * w.rows + r] = _mm512_reduce_add_ps(a[k]);
    }
    for (; j < n; ++j) {
      // the 8-row tile's order (one accumulator, then the tail, then one reduction), so that an
      // output does not depend on how many rows share the call (chunked prefill: the same bits)
      const float* xj = x + j * cols;
      __m512 a0 = _mm512_setzero_ps();
      for (std::int64_t c = 0; c < c16; c += 16) a0 = _mm512_fmadd_ps(_mm512_load_ps(wr + c), _mm512_loadu_ps(xj + c), a0);
      if (tail) a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, wr + c16), _mm512_maskz_loadu_ps(tail, xj + c16), a0);
      y[j * w.rows + r] = _mm512_reduce_add_ps(a0);
    }
  }
}

// ---- int8 activations ----

// The 16 int32 sums of 16 blocks from four vectors that hold 4 blocks each (block 4k + j's four
// partial sums in 128-bit lane j of p[k]): position 4j + k holds block 4k + j (a 4 x 4 transpose).
MFQAT_AVX512 inline __m512i transpose_sum(const __m512i p[4]) {
  const __m512i a = _mm512_add_epi32(_mm512_unpacklo_epi32(p[0], p[1]), _mm512_unpackhi_epi32(p[0], p[1]));
  const __m512i b = _mm512_add_epi32(_mm512_unpacklo_epi32(p[2], p[3]), _mm512_unpackhi_epi32(p[2], p[3]));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
}

// Position of block i (0..15 within its group of 16) after transpose_sum: self-inverse.
constexpr int transposed(int i) { return 4 * (i % 4) + i / 4; }

// transposed(0..15) as a permutation vector (the 16 block scales into transpose_sum's order).
MFQAT_AVX512 inline __m512i transposed_order() {
  alignas(64) std::int32_t v[16];
  for (int q = 0; q < 16; ++q) v[q] = transposed(q);
  return _mm512_load_si512(v);
}

// The 4-bit table made unsigned (value + off) in every 128-bit lane, for a 512-bit vpshufb.
MFQAT_AVX512 inline __m512i unsigned_nibble_table(const Decoder& d, int off) {
  alignas(64) std::int8_t t[64];
  for (int i = 0; i < 64; ++i) t[i] = static_cast<std::int8_t>(d.nib[i % 16] + off);
  return _mm512_load_si512(t);
}

MFQAT_AVX512 inline std::int32_t hsum_epi32(__m256i v) { return _mm512_reduce_add_epi32(_mm512_zextsi256_si512(v)); }

MFQAT_AVX512 void q8_rows_512(const Decoder& d, const MxView& w, const Q8Acts& a, float* y, std::int64_t r0, std::int64_t r1) {
  if (!d.aligned32) return scalar_q8_rows()(d, w, a, y, r0, r1);
  const mx::Format& f = *w.format;
  const std::int64_t nb = f.blocks_per_row(w.cols), full = w.cols / 32, cols = w.cols;
  const std::int64_t rb = static_cast<std::int64_t>(f.packed_row_bytes(cols));
  std::int8_t table[256];
  float mul = 1;
  q8_ints(d, table, &mul);
  const bool nib = d.nibble;
  const int off = nib ? q8_offset(d) : 128;
  // a.grouped blocks in groups of 4 (4-bit: [evens b0..b3 | odds b0..b3]; MXINT8: natural);
  // the groups of 16 among them take the main loop.
  const std::int64_t quads = a.grouped, chunks = quads / 16 * 16;
  // Per call: activation scale * mul and the offset correction, in the order transpose_sum
  // leaves the blocks of a group of 16 (natural order after it).
  thread_local AlignedVec<float> xs;
  thread_local AlignedVec<std::int32_t> corr;
  xs.resize(static_cast<std::size_t>(full));
  corr.resize(static_cast<std::size_t>(full));
  for (std::int64_t b = 0; b < full; ++b) {
    const std::int64_t pos = b < chunks ? (b & ~std::int64_t{15}) + transposed(static_cast<int>(b & 15)) : b;
    xs[static_cast<std::size_t>(pos)] = a.scale[static_cast<std::size_t>(b)] * mul;
    corr[static_cast<std::size_t>(pos)] = -off * a.sum[static_cast<std::size_t>(b)];
  }
  const __m512i tbl_u = unsigned_nibble_table(d, off);
  const __m512i m4 = _mm512_set1_epi8(0x0F), flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i tidx = transposed_order();
  const std::int8_t* xq = a.q.data();
  for (std::int64_t r = r0; r < r1; ++r) {
    const std::uint8_t* row = w.elements + r * rb;
    const std::uint8_t* sc = w.scales + r * nb;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (std::int64_t g = 0; g < chunks; g += 16) {
      __m512i p[4];
      if (nib) {
        const std::uint8_t* src = row + g * 16;
        for (int k = 0; k < 4; ++k) {
          prefetch_ahead(src + 64 * k);
          const __m512i bytes = _mm512_loadu_si512(src + 64 * k);
          const __m512i wl = _mm512_shuffle_epi8(tbl_u, _mm512_and_si512(bytes, m4));
          const __m512i wh = _mm512_shuffle_epi8(tbl_u, _mm512_and_si512(_mm512_srli_epi16(bytes, 4), m4));
          const std::int8_t* xg = xq + (g + 4 * k) * 32;
          p[k] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), wl, _mm512_loadu_si512(xg)), wh,
                                     _mm512_loadu_si512(xg + 64));
        }
      } else {
        const std::uint8_t* src = row + g * 32;
        const std::int8_t* xg = xq + g * 32;
        for (int k = 0; k < 4; ++k) {
          prefetch_ahead(src + 128 * k);
          prefetch_ahead(src + 128 * k + 64);
          const __m512i u0 = _mm512_xor_si512(_mm512_loadu_si512(src + 128 * k), flip);
          const __m512i u1 = _mm512_xor_si512(_mm512_loadu_si512(src + 128 * k + 64), flip);
          const __m512i q0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u0, _mm512_loadu_si512(xg + 128 * k));
          const __m512i q1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u1, _mm512_loadu_si512(xg + 128 * k + 64));
          // blocks 4k..4k+3 one per 128-bit lane: (q0 lanes 0+1, 2+3, q1 lanes 0+1, 2+3)
          p[k] = _mm512_add_epi32(_mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(3, 1, 3, 1)));
        }
      }
      const __m512i s = _mm512_add_epi32(transpose_sum(p), _mm512_loadu_si512(corr.data() + g));
      const __m512 S = _mm512_mul_ps(_mm512_permutexvar_ps(tidx, e8m0x16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc + g)))), _mm512_loadu_ps(xs.data() + g));
      if (g & 16) {
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), S, acc1);
      } else {
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), S, acc0);
      }
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    // groups of 4 after the groups of 16: one vector, its four lane sums
    for (std::int64_t g = chunks; g < quads; g += 4) {
      __m512i p;
      if (nib) {
        const __m512i bytes = _mm512_loadu_si512(row + g * 16);
        const __m512i wl = _mm512_shuffle_epi8(tbl_u, _mm512_and_si512(bytes, m4));
        const __m512i wh = _mm512_shuffle_epi8(tbl_u, _mm512_and_si512(_mm512_srli_epi16(bytes, 4), m4));
        p = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), wl, _mm512_loadu_si512(xq + g * 32)), wh,
                                _mm512_loadu_si512(xq + g * 32 + 64));
      } else {
        const __m512i u0 = _mm512_xor_si512(_mm512_loadu_si512(row + g * 32), flip);
        const __m512i u1 = _mm512_xor_si512(_mm512_loadu_si512(row + g * 32 + 64), flip);
        const __m512i q0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u0, _mm512_loadu_si512(xq + g * 32));
        const __m512i q1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u1, _mm512_loadu_si512(xq + g * 32 + 64));
        p = _mm512_add_epi32(_mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(3, 1, 3, 1)));
      }
      alignas(64) std::int32_t lanes[16];
      _mm512_store_si512(lanes, p);
      for (int j = 0; j < 4; ++j) {
        const std::int64_t b = g + j;
        const std::int32_t dot = lanes[4 * j] + lanes[4 * j + 1] + lanes[4 * j + 2] + lanes[4 * j + 3] + corr[static_cast<std::size_t>(b)];
        sum += static_cast<float>(dot) * (kScales.v[sc[b]] * xs[static_cast<std::size_t>(b)]);
      }
    }
    // whole blocks after the groups of 4 (4-bit: [evens | odds]), 256-bit
    for (std::int64_t b = quads; b < full; ++b) {
      __m256i u;
      if (nib) {
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + b * 16));
        const __m128i lo = _mm_and_si128(bytes, _mm512_castsi512_si128(m4));
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm512_castsi512_si128(m4));
        u = _mm256_shuffle_epi8(_mm512_castsi512_si256(tbl_u), _mm256_set_m128i(hi, lo));
      } else {
        u = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + b * 32)), _mm512_castsi512_si256(flip));
      }
      const __m256i pb = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * 32)));
      const std::int32_t dot = hsum_epi32(pb) + corr[static_cast<std::size_t>(b)];
      sum += static_cast<float>(dot) * (kScales.v[sc[b]] * xs[static_cast<std::size_t>(b)]);
    }
    if (full < nb) sum += partial_block_q8(f, table, mul, row, sc[full], a, cols);  // natural order
    y[r] = sum;
  }
}

// ---- fp32 activations in block fixed point (see FxActs) ----

// The first n (<= 0: none, >= 64: all) of 64 bytes.
inline __mmask64 first_bytes(std::int64_t n) {
  return n <= 0 ? 0 : n >= 64 ? ~__mmask64{0} : (__mmask64{1} << n) - 1;
}

// x rounded to fixed point per block and split into a.nd digits (layout: FxActs).
MFQAT_AVX512 bool fx_prepare_512_digits(const Decoder& d, const float* x, std::int64_t cols, FxActs& a, int nd) {
  const std::int64_t full = cols / 32, padded = (full + 15) / 16 * 16;
  const FxParams fp = fx_params(d, nd);
  const auto off = static_cast<std::uint32_t>(q8_offset(d));
  a.nd = nd;
  a.digits.resize(static_cast<std::size_t>(padded * 32 * nd));
  a.scale.resize(static_cast<std::size_t>(padded));
  a.corr.resize(static_cast<std::size_t>(padded));
  alignas(64) std::int32_t ev_v[16], od_v[16];
  for (int i = 0; i < 16; ++i) {
    ev_v[i] = 2 * i;
    od_v[i] = 2 * i + 1;
  }
  const __m512i ev = _mm512_load_si512(ev_v), od = _mm512_load_si512(od_v);
  const __m512 sign = _mm512_set1_ps(-0.0f), big = _mm512_set1_ps(std::numeric_limits<float>::max());
  for (std::int64_t b = 0; b < padded; ++b) {
    const std::int64_t pos = (b & ~std::int64_t{15}) + transposed(static_cast<int>(b & 15));
    __m512i q[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};  // X of the evens, the odds
    float s = 0;
    if (b < full) {
      const __m512 lo = _mm512_loadu_ps(x + b * 32), hi = _mm512_loadu_ps(x + b * 32 + 16);
      const __m512 alo = _mm512_andnot_ps(sign, lo), ahi = _mm512_andnot_ps(sign, hi);
      // Inf or NaN (vmaxps would drop a NaN, so ask each lane: not <= max, unordered included)
      if (_mm512_cmp_ps_mask(alo, big, _CMP_NLE_UQ) | _mm512_cmp_ps_mask(ahi, big, _CMP_NLE_UQ)) return false;
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(alo, ahi));
      if (amax > 0) {
        // A block whose scale 2^-t * nib_mul would be subnormal (or 0) takes the fp32 loop.
        if (fx_exponent(amax) < kFxMinExp) return false;
        const int t = fx_block_shift(fp, amax);
        // x * 2^t in two exact power-of-two steps (t, in [K - 127, K + 101], can leave fp32's
        // exponent range; each half cannot)
        const int s1 = t / 2;
        const __m512 f1 = _mm512_set1_ps(fx_pow2(s1)), f2 = _mm512_set1_ps(fx_pow2(t - s1));
        q[0] = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_mul_ps(_mm512_permutex2var_ps(lo, ev, hi), f1), f2));  // nearest even
        q[1] = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_mul_ps(_mm512_permutex2var_ps(lo, od, hi), f1), f2));
        s = d.nib_mul * fx_pow2(-t);  // exact, as ldexp: -t >= -(K + 101) >= -122
      }
    }
    a.scale[static_cast<std::size_t>(pos)] = s;
    // balanced base-256 digits: d0 = X's low byte sign-extended, then (X - d0) / 256, ...; the
    // top digit is stored first
    std::int8_t* base = a.digits.data() + b / 4 * (128 * nd) + b % 4 * 16;
    for (int h = 0; h < 2; ++h) {
      __m512i r = q[h];
      for (int j = nd - 1; j >= 0; --j) {
        const __m512i dj = _mm512_srai_epi32(_mm512_slli_epi32(r, 24), 24);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(base + 128 * j + 64 * h), _mm512_cvtepi32_epi8(dj));
        r = _mm512_srai_epi32(_mm512_sub_epi32(r, dj), 8);
      }
    }
    const auto sum = static_cast<std::uint32_t>(_mm512_reduce_add_epi32(_mm512_add_epi32(q[0], q[1])));  // |sum| <= 2^28
    a.corr[static_cast<std::size_t>(pos)] = static_cast<std::int32_t>(0u - off * sum);                  // mod 2^32
  }
  return true;
}

bool fx_prepare_512(const Decoder& d, const float* x, std::int64_t cols, FxActs& a) { return fx_prepare_512_digits(d, x, cols, a, fx_digits()); }

#define MFQAT_FX_NS fx_pshufb
#define MFQAT_FX_VBMI 0
#define MFQAT_FX_TARGET MFQAT_AVX512
#include "gemv_fx512.inc"
#undef MFQAT_FX_NS
#undef MFQAT_FX_VBMI
#undef MFQAT_FX_TARGET
#define MFQAT_FX_NS fx_vbmi
#define MFQAT_FX_VBMI 1
#define MFQAT_FX_TARGET MFQAT_AVX512_VBMI
#include "gemv_fx512.inc"
#undef MFQAT_FX_NS
#undef MFQAT_FX_VBMI
#undef MFQAT_FX_TARGET

// The process defaults of the Isa overloads (tests and benchmarks switch them; an engine has its
// own KernelOptions). Atomic: a test may switch them while another thread reads them.
std::atomic<bool> g_allowed{true};
std::atomic<bool> g_fixed{true};
std::atomic<bool> g_vbmi{true};

}  // namespace

bool cpu_avx512() {
  static const bool cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
  return cpu;
}
bool cpu_vbmi() {
  static const bool cpu = cpu_avx512() && __builtin_cpu_supports("avx512vbmi");
  return cpu;
}
bool avx512_active() { return cpu_avx512() && g_allowed.load(); }
void set_avx512(bool allowed) { g_allowed = allowed; }
bool fixed_point_acts() { return g_fixed.load(); }
bool vbmi_active() { return cpu_vbmi() && avx512_active() && g_vbmi.load(); }
void set_vbmi(bool allowed) { g_vbmi = allowed; }
void set_fixed_point_acts(bool allowed) { g_fixed = allowed; }
FxPrepareFn avx512_fx_prepare() { return fx_prepare_512; }
FxPrepareDigitsFn avx512_fx_prepare_digits() { return fx_prepare_512_digits; }
FxRowsFn avx512_fx_rows() { return avx512_fx_rows(vbmi_active()); }
FxRowsFn avx512_fx_rows(bool vbmi) { return vbmi ? fx_vbmi::rows : fx_pshufb::rows; }
Gemv512Fn avx512_gemv_rows() { return gemv_rows_512; }
RowsFn avx512_gemm_rows() { return gemm_rows_512; }
Q8RowsFn avx512_q8_rows() { return q8_rows_512; }

}  // namespace mfqat::runtime::detail
