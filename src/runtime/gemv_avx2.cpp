// AVX2/FMA paths of the fused MX products (compiled with per-function target attributes, chosen
// at run time). Per block of 32 codes: 4-bit formats decode with one byte shuffle (vpshufb) from
// a 16-entry int8 table; INT formats sign-extend; FP formats are rebuilt arithmetically:
//   bits = (magnitude << (23 - M)) + ((127 - bias) << 23)   normal codes: exactly the value
//   subnormal codes (exponent field 0): value = 2 * that - 2^(1 - bias)  (exact)
// so no fp32 subnormal is ever formed. Finite codes only (the engine refuses NaN/Inf codes).
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "gemv_internal.h"
#include "mfqat/mx/codec.h"

#define MFQAT_AVX2 __attribute__((target("avx2,fma")))

// How far ahead (bytes of packed weights) the int8-activation loops prefetch.
constexpr std::int64_t kQ8PrefetchBytes = 4096;

namespace mfqat::runtime::detail {

namespace {

struct Scales {
  float v[256];
  Scales() {
    for (int s = 0; s < 256; ++s) v[s] = mx::e8m0_to_float(static_cast<std::uint8_t>(s));
  }
};
const Scales kScales;

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
    mx::detail::unpack_codes_at(p, 0, 32, d.bits, buf);
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
    mx::detail::unpack_codes_at(row, full * 32 * f.bits, w.cols - full * 32, f.bits, codes);
    const float s = kScales.v[w.scales[r * nb + full]];
    for (std::int64_t i = 0; i < w.cols - full * 32; ++i) out[full * 32 + i] = d.p.lut[codes[i]] * s;
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
      if (full < nb) {
        std::uint8_t codes[32];
        const std::int64_t len = cols - full * 32;
        mx::detail::unpack_codes_at(row, full * 32 * f.bits, len, f.bits, codes);
        float dot = 0;
        for (std::int64_t i = 0; i < len; ++i) dot += d.p.lut[codes[i]] * x[full * 32 + i];
        sum += kScales.v[sc[full]] * dot;
      }
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

#define Q8_NAME q8_rows_avx2
#define Q8_TARGET MFQAT_AVX2
#define Q8_VNNI 0
#include "q8_avx2.inc"
#undef Q8_NAME
#undef Q8_TARGET
#undef Q8_VNNI

#define Q8_NAME q8_rows_vnni
#define Q8_TARGET __attribute__((target("avx2,fma,avx512vnni,avx512vl")))
#define Q8_VNNI 1
#include "q8_avx2.inc"
#undef Q8_NAME
#undef Q8_TARGET
#undef Q8_VNNI

std::atomic<bool> g_q8_vnni_allowed{true};

}  // namespace

Q8RowsFn avx2_q8_rows() { return q8_vnni_active() ? q8_rows_vnni : q8_rows_avx2; }
bool q8_vnni_active() { return g_q8_vnni_allowed && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl"); }
void set_q8_vnni(bool allowed) { g_q8_vnni_allowed = allowed; }
RowsFn avx2_rows() { return rows_avx2; }
DecodeRowFn avx2_decode_row() { return decode_row; }

}  // namespace mfqat::runtime::detail
