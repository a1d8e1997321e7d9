// AVX2/FMA paths of the fused MX products (compiled with per-function target attributes, chosen
// at run time). Per block of 32 codes: 4-bit formats decode with one byte shuffle (vpshufb) from
// a 16-entry int8 table; INT formats sign-extend; FP formats are rebuilt arithmetically:
//   bits = (magnitude << (23 - M)) + ((127 - bias) << 23)   normal codes: exactly the value
//   subnormal codes (exponent field 0): value = 2 * that - 2^(1 - bias)  (exact)
// so no fp32 subnormal is ever formed. Finite codes only (the engine refuses NaN/Inf codes).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "gemv_internal.h"
#include "mfqat/mx/codec.h"

#define MFQAT_AVX2 __attribute__((target("avx2,fma")))

namespace mfqat::runtime::detail {

namespace {

MFQAT_AVX2 inline __m256 decode8_fp(const Decoder& d, __m256i c) {
  const int B = d.bits, M = d.mbits;
  const __m256i sign = _mm256_slli_epi32(_mm256_srli_epi32(c, B - 1), 31);
  const __m256i mag = _mm256_and_si256(c, _mm256_set1_epi32((1 << (B - 1)) - 1));
  const __m256i bits = _mm256_add_epi32(_mm256_sll_epi32(mag, _mm_cvtsi32_si128(23 - M)), _mm256_set1_epi32((127 - d.bias) << 23));
  const __m256 v = _mm256_castsi256_ps(bits);
  const __m256 sub = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(1 << M), mag));
  const __m256 vs = _mm256_fmsub_ps(v, _mm256_set1_ps(2.0f), _mm256_set1_ps(d.sub_off));
  return _mm256_or_ps(_mm256_blendv_ps(v, vs, sub), _mm256_castsi256_ps(sign));
}

MFQAT_AVX2 inline __m256 decode8_int(const Decoder& d, __m256i c) {
  const __m128i sh = _mm_cvtsi32_si128(32 - d.bits);
  return _mm256_cvtepi32_ps(_mm256_sra_epi32(_mm256_sll_epi32(c, sh), sh));
}

// 32 codes of a whole block starting at byte `p` -> v[0..3], without the block scale and
// without the format multiplier (mul(): nib_mul or int_mul, a power of two).
MFQAT_AVX2 inline void decode32(const Decoder& d, const std::uint8_t* p, __m256 v[4], bool safe8 = false) {
  if (d.nibble) {
    const __m128i tbl = _mm_loadu_si128(reinterpret_cast<const __m128i*>(d.nib));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i m = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
    // element 2i is the low nibble of byte i
    const __m128i e0 = _mm_shuffle_epi8(tbl, _mm_unpacklo_epi8(lo, hi)), e1 = _mm_shuffle_epi8(tbl, _mm_unpackhi_epi8(lo, hi));
    v[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(e0));
    v[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(e0, 8)));
    v[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(e1));
    v[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(e1, 8)));
    return;
  }
  if (d.bits != 8 && safe8) {
    // 8 codes = B bytes: broadcast them, shuffle the 4 bytes each code starts in into its
    // 32-bit lane, shift it down, mask. (Loads 8 bytes: the caller says they are readable.)
    const __m256i idx = _mm256_load_si256(reinterpret_cast<const __m256i*>(d.gather_idx));
    const __m256i sh = _mm256_load_si256(reinterpret_cast<const __m256i*>(d.gather_shift));
    const __m256i mask = _mm256_set1_epi32((1 << d.bits) - 1);
    for (int k = 0; k < 4; ++k) {
      std::int64_t word;
      std::memcpy(&word, p + k * d.bits, 8);
      const __m256i c = _mm256_and_si256(_mm256_srlv_epi32(_mm256_shuffle_epi8(_mm256_set1_epi64x(word), idx), sh), mask);
      v[k] = d.is_int ? decode8_int(d, c) : decode8_fp(d, c);
    }
    return;
  }
  alignas(32) std::uint8_t buf[32];
  const std::uint8_t* codes = p;
  if (d.bits != 8) {
    mx::unpack_codes_at(p, 0, 32, d.bits, buf);
    codes = buf;
  }
  for (int k = 0; k < 4; ++k) {
    const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + 8 * k)));
    v[k] = d.is_int ? decode8_int(d, c) : decode8_fp(d, c);
  }
}

inline float mul(const Decoder& d) { return d.nibble ? d.nib_mul : d.int_mul; }

MFQAT_AVX2 inline float hsum(__m256 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// Row r decoded and scaled into out[cols].
MFQAT_AVX2 void decode_row(const Decoder& d, const MxView& w, std::int64_t r, float* out) {
  if (!d.aligned32) return decode_row_scalar(d, w, r, out);
  const mx::Format& f = *w.format;
  const std::int64_t nb = f.blocks_per_row(w.cols), full = w.cols / 32;
  const std::uint8_t* row = w.elements + r * static_cast<std::int64_t>(f.packed_row_bytes(w.cols));
  const float m = mul(d);
  const std::uint8_t* end = w.elements + w.rows * static_cast<std::int64_t>(f.packed_row_bytes(w.cols));
  for (std::int64_t b = 0; b < full; ++b) {
    __m256 v[4];
    const std::uint8_t* p = row + b * 4 * d.bits;
    decode32(d, p, v, p + 3 * d.bits + 8 <= end);
    const __m256 s = _mm256_set1_ps(kScales.v[w.scales[r * nb + b]] * m);
    for (int k = 0; k < 4; ++k) _mm256_storeu_ps(out + b * 32 + 8 * k, _mm256_mul_ps(v[k], s));
  }
  if (full < nb) {  // partial last block: the reference
    std::uint8_t codes[32];
    mx::unpack_codes_at(row, full * 32 * f.bits, w.cols - full * 32, f.bits, codes);
    const float s = kScales.v[w.scales[r * nb + full]];
    for (std::int64_t i = 0; i < w.cols - full * 32; ++i) out[full * 32 + i] = d.lut[codes[i]] * s;
  }
}

MFQAT_AVX2 void rows_avx2(const Decoder& d, const MxView& w, const float* x, std::int64_t n, float* y, std::int64_t r0, std::int64_t r1) {
  if (!d.aligned32) return scalar_rows()(d, w, x, n, y, r0, r1);
  const mx::Format& f = *w.format;
  const std::int64_t nb = f.blocks_per_row(w.cols), full = w.cols / 32, cols = w.cols;
  const std::int64_t rb = static_cast<std::int64_t>(f.packed_row_bytes(cols));
  const std::uint8_t* end = w.elements + w.rows * rb;
  if (n == 1) {
    const float m = mul(d);
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::uint8_t* row = w.elements + r * rb;
      const std::uint8_t* sc = w.scales + r * nb;
      // Per block: dot of the decoded codes and x (4 lanes-wide partial sums), then one FMA
      // with the block scale into the row sum (two accumulators alternate for ILP).
      __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
      std::int64_t b = 0;
      for (; b + 2 <= full; b += 2) {
        __m256 v[4], u[4];
        const std::uint8_t* p0 = row + b * 4 * d.bits;
        decode32(d, p0, v, true);  // a block follows: 8-byte loads stay inside the matrix
        decode32(d, p0 + 4 * d.bits, u, p0 + 7 * d.bits + 8 <= end);
        const float* xb = x + b * 32;
        __m256 p = _mm256_mul_ps(v[0], _mm256_loadu_ps(xb));
        __m256 q = _mm256_mul_ps(u[0], _mm256_loadu_ps(xb + 32));
        for (int k = 1; k < 4; ++k) {
          p = _mm256_fmadd_ps(v[k], _mm256_loadu_ps(xb + 8 * k), p);
          q = _mm256_fmadd_ps(u[k], _mm256_loadu_ps(xb + 32 + 8 * k), q);
        }
        acc0 = _mm256_fmadd_ps(p, _mm256_set1_ps(kScales.v[sc[b]] * m), acc0);
        acc1 = _mm256_fmadd_ps(q, _mm256_set1_ps(kScales.v[sc[b + 1]] * m), acc1);
      }
      if (b < full) {
        __m256 v[4];
        const std::uint8_t* p0 = row + b * 4 * d.bits;
        decode32(d, p0, v, p0 + 3 * d.bits + 8 <= end);
        const float* xb = x + b * 32;
        __m256 p = _mm256_mul_ps(v[0], _mm256_loadu_ps(xb));
        for (int k = 1; k < 4; ++k) p = _mm256_fmadd_ps(v[k], _mm256_loadu_ps(xb + 8 * k), p);
        acc0 = _mm256_fmadd_ps(p, _mm256_set1_ps(kScales.v[sc[b]] * m), acc0);
      }
      float sum = hsum(_mm256_add_ps(acc0, acc1));
      if (full < nb) sum += partial_block(d, f, row, sc[full], x, cols);  // the reference, natural x
      y[r] = sum;
    }
    return;
  }
  // GEMM: decode the row once (L1 scratch), then 4 activation rows at a time.
  thread_local std::vector<float> buf;
  buf.resize(static_cast<std::size_t>(cols));
  const std::int64_t c8 = cols / 8 * 8;
  for (std::int64_t r = r0; r < r1; ++r) {
    decode_row(d, w, r, buf.data());
    const float* wr = buf.data();
    std::int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      const float* x0 = x + j * cols;
      const float* x1 = x0 + cols;
      const float* x2 = x1 + cols;
      const float* x3 = x2 + cols;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (std::int64_t c = 0; c < c8; c += 8) {
        const __m256 wv = _mm256_loadu_ps(wr + c);
        a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x0 + c), a0);
        a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x1 + c), a1);
        a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x2 + c), a2);
        a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x3 + c), a3);
      }
      float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
      for (std::int64_t c = c8; c < cols; ++c) {
        s0 += wr[c] * x0[c];
        s1 += wr[c] * x1[c];
        s2 += wr[c] * x2[c];
        s3 += wr[c] * x3[c];
      }
      y[j * w.rows + r] = s0;
      y[(j + 1) * w.rows + r] = s1;
      y[(j + 2) * w.rows + r] = s2;
      y[(j + 3) * w.rows + r] = s3;
    }
    for (; j < n; ++j) {
      const float* xj = x + j * cols;
      __m256 a = _mm256_setzero_ps();
      for (std::int64_t c = 0; c < c8; c += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(wr + c), _mm256_loadu_ps(xj + c), a);
      float s = hsum(a);
      for (std::int64_t c = c8; c < cols; ++c) s += wr[c] * xj[c];
      y[j * w.rows + r] = s;
    }
  }
}

// E8M0 bytes of 8 blocks -> their scales as fp32 (e = 0: 2^-127, a subnormal; e = 255: NaN),
// equal to kScales.v[e].
MFQAT_AVX2 inline __m256 e8m0x8(const std::uint8_t* s) {
  const __m256i e = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s)));
  __m256i bits = _mm256_slli_epi32(e, 23);
  bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x00400000), _mm256_cmpeq_epi32(e, _mm256_setzero_si256()));
  bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x7FC00000), _mm256_cmpeq_epi32(e, _mm256_set1_epi32(255)));
  return _mm256_castsi256_ps(bits);
}

// c + the int32 dot products of a block pair: unsigned table values (low and high nibbles) with
// the activations laid out to match (see quantize_acts). sum16: the two int16 products may be
// added before widening (no saturation possible for this table).
MFQAT_AVX2 inline __m256i dot4(__m256i c, __m256i wl, __m256i xl, __m256i wh, __m256i xh, bool sum16) {
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i pl = _mm256_maddubs_epi16(wl, xl), ph = _mm256_maddubs_epi16(wh, xh);
  return _mm256_add_epi32(c, sum16 ? _mm256_madd_epi16(_mm256_add_epi16(pl, ph), ones)
                                   : _mm256_add_epi32(_mm256_madd_epi16(pl, ones), _mm256_madd_epi16(ph, ones)));
}

// int8 activations. Per block an exact integer dot (vpmaddubsw pairs -> vpmaddwd), converted
// and scaled into fp32 accumulators. Fast loops take 8 blocks at a time with the 8 block scales
// built in one register (E8M0 bits -> fp32, times the activation scales) and spread by a lane
// permute instead of a scalar load + broadcast per block:
//   4-bit: one 32-byte load holds a pair of blocks; the low and high nibbles go through a
//          256-bit vpshufb with the table offset to unsigned values u = v + off, so vpmaddubsw
//          takes u and the activations directly (no sign fix-ups); sum(v x) = sum(u x) - off sum(x),
//          the correction added per block in int32 (exact).
//   MXINT8: two blocks per step, |w| x sign-adjusted x, the two blocks' int32 partial sums
//          folded with one vphaddd so that one convert + one FMA serve both.
// Whole blocks after the last group of 8 and a partial last block take the per-block loop.
MFQAT_AVX2 void q8_rows_avx2(const Decoder& d, const MxView& w, const Q8Acts& a, float* y, std::int64_t r0, std::int64_t r1) {
  if (!d.aligned32) return scalar_q8_rows()(d, w, a, y, r0, r1);
  const mx::Format& f = *w.format;
  const std::int64_t nb = f.blocks_per_row(w.cols), full = w.cols / 32, cols = w.cols;
  const std::int64_t rb = static_cast<std::int64_t>(f.packed_row_bytes(cols));
  std::int8_t table[256];
  float mul = 1;
  q8_ints(d, table, &mul);
  // 4-bit: the first a.grouped blocks are stored by pairs (a multiple of 8); MXINT8: natural order
  const std::int64_t grouped = d.nibble ? a.grouped : full / 8 * 8;
  // Per-call constants of the activations: scale * mul per block; 4-bit: -off * sum(x) per block.
  thread_local std::vector<float> xs;
  thread_local std::vector<std::int32_t> corr;
  xs.resize(static_cast<std::size_t>(grouped));
  for (std::int64_t b = 0; b < grouped; ++b) xs[static_cast<std::size_t>(b)] = a.scale[static_cast<std::size_t>(b)] * mul;
  const int off = d.nibble ? q8_offset(d) : 0;
  const bool sum16 = d.nibble && 4 * 127 * (off + *std::max_element(d.nib, d.nib + 16)) <= 32767;
  if (d.nibble) {
    corr.assign(static_cast<std::size_t>(grouped), 0);
    for (std::int64_t b = 0; b < grouped; ++b) {
      // per group of 8 in the order the reduction below leaves the block sums: 0 2 4 6 1 3 5 7
      const std::int64_t j = b & 7;
      corr[static_cast<std::size_t>((b & ~std::int64_t{7}) + (j & 1) * 4 + j / 2)] = -off * a.sum[static_cast<std::size_t>(b)];
    }
  }
  std::int8_t tblu[16];
  for (int i = 0; i < 16; ++i) tblu[i] = static_cast<std::int8_t>(d.nib[i] + off);
  const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d.nib)));
  const __m256i tbl_u = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tblu)));
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m256i m4x2 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i even_odd = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const __m256i hadd_idx[4] = {_mm256_setr_epi32(0, 0, 1, 1, 0, 0, 1, 1), _mm256_setr_epi32(2, 2, 3, 3, 2, 2, 3, 3),
                               _mm256_setr_epi32(4, 4, 5, 5, 4, 4, 5, 5), _mm256_setr_epi32(6, 6, 7, 7, 6, 6, 7, 7)};
  for (std::int64_t r = r0; r < r1; ++r) {
    const std::uint8_t* row = w.elements + r * rb;
    const std::uint8_t* sc = w.scales + r * nb;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (std::int64_t g = 0; g < grouped; g += 8) {
      // Software prefetch 4 KiB ahead in the weight stream (the lines this group will need then):
      // the hardware prefetcher alone does not keep one core's stream at the memory's speed on
      // matrices far beyond the cache (docs/perf.md). Past the end it is a harmless hint.
      // The address is formed in integers: it may lie past the matrix, where pointer arithmetic
      // would be undefined.
      // NOLINTNEXTLINE(performance-no-int-to-ptr)
      const auto* ahead = reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(row) + static_cast<std::uintptr_t>(g * (d.nibble ? 16 : 32) + kPrefetchBytes));
      _mm_prefetch(ahead, _MM_HINT_T0);
      _mm_prefetch(ahead + 64, _MM_HINT_T0);
      if (!d.nibble) {
        _mm_prefetch(ahead + 128, _MM_HINT_T0);
        _mm_prefetch(ahead + 192, _MM_HINT_T0);
      }
      const __m256 S = _mm256_mul_ps(e8m0x8(sc + g), _mm256_loadu_ps(xs.data() + g));
      if (d.nibble) {
        // Four pairs' int32 partial sums (block 2k in lanes 0-3, 2k+1 in 4-7) reduced by three
        // vphaddd to the 8 block sums, in the order 0 2 4 6 1 3 5 7; the offset correction, one
        // convert and one FMA then serve all 8 blocks.
        __m256i p[4];
        for (int k = 0; k < 4; ++k) {
          const std::int64_t b = g + 2 * k;
          const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + b * 16));
          const __m256i wl = _mm256_shuffle_epi8(tbl_u, _mm256_and_si256(bytes, m4x2));
          const __m256i wh = _mm256_shuffle_epi8(tbl_u, _mm256_and_si256(_mm256_srli_epi16(bytes, 4), m4x2));
          const std::int8_t* xq = a.q.data() + b * 32;
          const __m256i xl = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
          const __m256i xh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32));
          p[k] = dot4(_mm256_setzero_si256(), wl, xl, wh, xh, sum16);
        }
        __m256i sums = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
        sums = _mm256_add_epi32(sums, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr.data() + g)));
        const __m256 s = _mm256_permutevar8x32_ps(S, even_odd);
        if (g & 8) {
          acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), s, acc1);
        } else {
          acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), s, acc0);
        }
      } else {
        for (int k = 0; k < 4; ++k) {
          const std::int64_t b = g + 2 * k;
          const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + b * 32));
          const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + b * 32 + 32));
          const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + b * 32));
          const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + b * 32 + 32));
          const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(x0, w0)), ones);
          const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w1, w1), _mm256_sign_epi8(x1, w1)), ones);
          const __m256 s = _mm256_permutevar8x32_ps(S, hadd_idx[k]);
          const __m256 v = _mm256_cvtepi32_ps(_mm256_hadd_epi32(p0, p1));
          if (k & 1) {
            acc1 = _mm256_fmadd_ps(v, s, acc1);
          } else {
            acc0 = _mm256_fmadd_ps(v, s, acc0);
          }
        }
      }
    }
    for (std::int64_t b = grouped; b < full; ++b) {
      __m256i wv;
      if (d.nibble) {  // low nibbles = even elements, high = odd (the activations are stored so)
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + b * 16));
        const __m128i lo = _mm_and_si128(bytes, m4), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), m4);
        wv = _mm256_shuffle_epi8(tbl, _mm256_set_m128i(hi, lo));
      } else {
        wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + b * 32));
      }
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + b * 32));
      const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv)), ones);
      const __m256 s = _mm256_set1_ps(kScales.v[sc[b]] * mul * a.scale[static_cast<std::size_t>(b)]);
      if (b & 1) {
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc1);
      } else {
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc0);
      }
    }
    float sum = hsum(_mm256_add_ps(acc0, acc1));
    if (full < nb) sum += partial_block_q8(f, table, mul, row, sc[full], a, cols);  // natural order
    y[r] = sum;
  }
}

}  // namespace

Q8RowsFn avx2_q8_rows() { return q8_rows_avx2; }
RowsFn avx2_rows() { return rows_avx2; }
DecodeRowFn avx2_decode_row() { return decode_row; }

}  // namespace mfqat::runtime::detail
