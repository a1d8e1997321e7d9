// AVX2+FMA kernels (x86-64), selected at run time. Every function carries the target attribute
// instead of compiling the file with -mavx2, so no inline function or template from a shared
// header is ever emitted with AVX2 instructions and picked by the linker for scalar code.
// Each step re-states kernels_scalar.cpp / quantize_magnitude() lane-wise; tests check bit equality.
#include <immintrin.h>

#include <cstring>
#include <limits>

#include "kernels.h"

#define MFQAT_AVX2 __attribute__((target("avx2,fma")))

namespace mfqat::mx::detail {
namespace {

enum Mode { kEven = 0, kAway = 1, kStoch = 2 };

struct alignas(32) Vecs {
  __m256i emin127, k254m, mvec, maxcode, zero, absmask, signmask, bmask, topbit;
  __m256 maxnorm, half, one, two_m24;
  __m128i mcount;
};

MFQAT_AVX2 inline Vecs make_vecs(const KernelParams& p) {
  Vecs v;
  v.emin127 = _mm256_set1_epi32(p.emin + 127);
  v.k254m = _mm256_set1_epi32(254 + p.mbits);
  v.mvec = _mm256_set1_epi32(p.mbits);
  v.maxcode = _mm256_set1_epi32(static_cast<int>(p.max_code));
  v.zero = _mm256_setzero_si256();
  v.absmask = _mm256_set1_epi32(0x7fffffff);
  v.signmask = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  v.bmask = _mm256_set1_epi32((1 << p.bits) - 1);
  v.topbit = _mm256_set1_epi32(1 << (p.bits - 1));
  v.maxnorm = _mm256_set1_ps(p.max_normal);
  v.half = _mm256_set1_ps(0.5f);
  v.one = _mm256_set1_ps(1.0f);
  v.two_m24 = _mm256_set1_ps(0x1p-24f);
  v.mcount = _mm_cvtsi32_si128(p.mbits);
  return v;
}

MFQAT_AVX2 inline std::uint32_t hmax_epi32(__m256i v) {
  __m128i m = _mm_max_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0x4e));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0xb1));
  return static_cast<std::uint32_t>(_mm_cvtsi128_si32(m));
}

MFQAT_AVX2 inline __m256i mix32v(__m256i x) {
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7feb352d));
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(static_cast<int>(0x846ca68bu)));
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  return x;
}

// stochastic_draw() for the 8 flat indices i0 .. i0+7, as floats u = draw * 2^-24.
MFQAT_AVX2 inline __m256 draws(const Vecs& c, std::uint64_t seed, std::uint64_t i0) {
  const __m256i lo0 = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(i0)));
  const __m256i lo = _mm256_add_epi32(lo0, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  // carry into the high word where the low word wrapped (unsigned lo < lo0)
  const __m256i carry = _mm256_cmpgt_epi32(_mm256_xor_si256(lo0, c.signmask), _mm256_xor_si256(lo, c.signmask));
  const __m256i hi = _mm256_sub_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(i0 >> 32))), carry);
  const __m256i t = mix32v(_mm256_xor_si256(hi, _mm256_set1_epi32(static_cast<int>(seed_key_lo(seed)))));
  const __m256i h = mix32v(_mm256_xor_si256(_mm256_xor_si256(lo, t), _mm256_set1_epi32(static_cast<int>(seed_key_hi(seed)))));
  return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(h, 8)), c.two_m24);
}

// One vector of quantize_magnitude(): returns r (rounded grid index, float) and the unclamped
// magnitude code; `kf` gets the biased binade exponent.
template <int MODE>
MFQAT_AVX2 inline __m256 round_grid(const Vecs& c, __m256 a, __m256i* kf_out, __m256i* code_out, std::uint64_t seed,
                                    std::uint64_t i0) {
  const __m256i ef = _mm256_srli_epi32(_mm256_castps_si256(a), 23);
  const __m256i kf = _mm256_max_epi32(ef, c.emin127);
  const __m256 n = _mm256_mul_ps(a, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_sub_epi32(c.k254m, kf), 23)));
  __m256 r;
  if constexpr (MODE == kEven) {
    r = _mm256_round_ps(n, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  } else {
    const __m256 t = _mm256_round_ps(n, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_sub_ps(n, t);
    __m256 up;
    if constexpr (MODE == kAway) {
      up = _mm256_cmp_ps(frac, c.half, _CMP_GE_OQ);
    } else {
      up = _mm256_cmp_ps(frac, draws(c, seed, i0), _CMP_GT_OQ);
    }
    r = _mm256_add_ps(t, _mm256_and_ps(up, c.one));
  }
  *kf_out = kf;
  *code_out = _mm256_add_epi32(_mm256_sll_epi32(_mm256_sub_epi32(kf, c.emin127), c.mcount), _mm256_cvttps_epi32(r));
  return r;
}

// Copies a partial block into a zero-padded buffer of whole vectors.
inline const float* padded(const float* x, std::int64_t len, float* buf) {
  std::memcpy(buf, x, static_cast<std::size_t>(len) * 4);
  const std::int64_t full = (len + 7) & ~std::int64_t{7};
  for (std::int64_t i = len; i < full; ++i) buf[i] = 0.0f;
  return buf;
}

MFQAT_AVX2 inline std::uint8_t block_scale(const Vecs& c, const float* xb, std::int64_t nv, int emax) {
  __m256i mx = c.zero;
  for (std::int64_t v = 0; v < nv; ++v) {
    mx = _mm256_max_epi32(mx, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 8 * v)), c.absmask));
  }
  return shared_scale(hmax_epi32(mx), emax);
}

template <int MODE, bool SAT>
MFQAT_AVX2 void fake_quantize_avx2_t(const KernelParams& p, const float* x, float* y, std::int64_t n, std::uint8_t* sat,
                                      const RoundCtx& rc) {
  const Vecs c = make_vecs(p);
  alignas(32) float xin[kMaxBlockSize + 8], yout[kMaxBlockSize + 8];
  std::uint8_t satbuf[kMaxBlockSize + 8];
  const std::int64_t bs = p.block_size;
  for (std::int64_t b0 = 0; b0 < n; b0 += bs) {
    const std::int64_t len = n - b0 < bs ? n - b0 : bs;
    const std::int64_t nv = (len + 7) / 8;
    const bool pad = (len & 7) != 0;
    const float* xb = pad ? padded(x + b0, len, xin) : x + b0;
    float* yb = pad ? yout : y + b0;
    std::uint8_t* sb = pad ? satbuf : (SAT ? sat + b0 : nullptr);
    const std::uint8_t s = block_scale(c, xb, nv, p.emax);
    if (s == kE8M0Nan) {
      const __m256 nan = _mm256_set1_ps(std::numeric_limits<float>::quiet_NaN());
      for (std::int64_t v = 0; v < nv; ++v) _mm256_storeu_ps(yb + 8 * v, nan);
      if (SAT) std::memset(sb, 0, static_cast<std::size_t>(nv * 8));
    } else {
      const int X = static_cast<int>(s) - 127;
      const __m256 inv = _mm256_set1_ps(pow2f(-X)), scale = _mm256_set1_ps(pow2f(X));
      for (std::int64_t v = 0; v < nv; ++v) {
        const __m256i xi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 8 * v));
        __m256i sign = _mm256_and_si256(xi, c.signmask);
        const __m256 a = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_and_si256(xi, c.absmask)), inv);
        __m256i kf, code;
        const __m256 r = round_grid<MODE>(c, a, &kf, &code, rc.seed, rc.index0 + static_cast<std::uint64_t>(b0 + 8 * v));
        __m256 val = _mm256_mul_ps(r, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_sub_epi32(kf, c.mvec), 23)));
        val = _mm256_min_ps(val, c.maxnorm);
        if (p.is_int) sign = _mm256_andnot_si256(_mm256_cmpeq_epi32(code, c.zero), sign);
        const __m256 out = _mm256_or_ps(_mm256_mul_ps(val, scale), _mm256_castsi256_ps(sign));
        _mm256_storeu_ps(yb + 8 * v, out);
        if constexpr (SAT) {
          const __m256i m = _mm256_srli_epi32(_mm256_cmpgt_epi32(code, c.maxcode), 31);  // 0/1 per lane
          const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
          _mm_storel_epi64(reinterpret_cast<__m128i*>(sb + 8 * v), _mm_packus_epi16(w, w));
        }
      }
    }
    if (pad) {
      std::memcpy(y + b0, yout, static_cast<std::size_t>(len) * 4);
      if (SAT) std::memcpy(sat + b0, satbuf, static_cast<std::size_t>(len));
    }
  }
}

template <int MODE>
MFQAT_AVX2 void quantize_avx2_t(const KernelParams& p, const float* x, std::int64_t n, std::uint8_t* packed,
                                 std::uint8_t* scales, const RoundCtx& rc) {
  const Vecs c = make_vecs(p);
  alignas(32) float xin[kMaxBlockSize + 8];
  alignas(32) std::uint8_t codes[kMaxBlockSize + 8];
  const std::int64_t bs = p.block_size;
  std::int64_t bitpos = 0;
  for (std::int64_t b0 = 0, blk = 0; b0 < n; b0 += bs, ++blk) {
    const std::int64_t len = n - b0 < bs ? n - b0 : bs;
    const std::int64_t nv = (len + 7) / 8;
    const float* xb = (len & 7) ? padded(x + b0, len, xin) : x + b0;
    const std::uint8_t s = block_scale(c, xb, nv, p.emax);
    scales[blk] = s;
    if (s == kE8M0Nan) {
      std::memset(codes, 0, static_cast<std::size_t>(nv * 8));
    } else {
      const __m256 inv = _mm256_set1_ps(pow2f(127 - static_cast<int>(s)));
      for (std::int64_t v = 0; v < nv; ++v) {
        const __m256i xi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 8 * v));
        const __m256 a = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_and_si256(xi, c.absmask)), inv);
        __m256i kf, code;
        round_grid<MODE>(c, a, &kf, &code, rc.seed, rc.index0 + static_cast<std::uint64_t>(b0 + 8 * v));
        code = _mm256_min_epi32(code, c.maxcode);
        const __m256i neg = _mm256_srai_epi32(xi, 31);
        if (p.is_int) {
          code = _mm256_blendv_epi8(code, _mm256_and_si256(_mm256_sub_epi32(c.zero, code), c.bmask), neg);
        } else {
          code = _mm256_or_si256(code, _mm256_and_si256(neg, c.topbit));
        }
        const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + 8 * v), _mm_packus_epi16(w, w));
      }
    }
    pack_codes_at(codes, len, p.bits, packed, bitpos);
    bitpos += len * p.bits;
  }
}

MFQAT_AVX2 void dequantize_avx2(const KernelParams& p, const std::uint8_t* packed, const std::uint8_t* scales,
                                std::int64_t n, float* y) {
  alignas(32) std::uint8_t buf[kMaxBlockSize + 8];
  const std::int64_t bs = p.block_size;
  std::int64_t bitpos = 0;
  for (std::int64_t b0 = 0, blk = 0; b0 < n; b0 += bs, ++blk) {
    const std::int64_t len = n - b0 < bs ? n - b0 : bs;
    const std::uint8_t* codes;
    if (p.bits == 8) {
      codes = packed + (bitpos >> 3);
    } else {
      unpack_codes_at(packed, bitpos, len, p.bits, buf);
      codes = buf;
    }
    bitpos += len * p.bits;
    const float fs = e8m0_to_float(scales[blk]);
    const __m256 scale = _mm256_set1_ps(fs);
    float* yb = y + b0;
    std::int64_t i = 0;
    for (; i + 8 <= len; i += 8) {
      const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i)));
      _mm256_storeu_ps(yb + i, _mm256_mul_ps(_mm256_i32gather_ps(p.lut, idx, 4), scale));
    }
    for (; i < len; ++i) yb[i] = p.lut[codes[i]] * fs;
  }
}

template <int MODE>
MFQAT_AVX2 void fake_quantize_avx2_m(const KernelParams& p, const float* x, float* y, std::int64_t n, std::uint8_t* sat,
                                      const RoundCtx& rc) {
  if (sat) {
    fake_quantize_avx2_t<MODE, true>(p, x, y, n, sat, rc);
  } else {
    fake_quantize_avx2_t<MODE, false>(p, x, y, n, sat, rc);
  }
}

MFQAT_AVX2 void fake_quantize_avx2(const KernelParams& p, const float* x, float* y, std::int64_t n, std::uint8_t* sat,
                                   const RoundCtx& rc) {
  switch (rc.mode) {
    case Rounding::NearestEven: return fake_quantize_avx2_m<kEven>(p, x, y, n, sat, rc);
    case Rounding::NearestAway: return fake_quantize_avx2_m<kAway>(p, x, y, n, sat, rc);
    case Rounding::Stochastic: return fake_quantize_avx2_m<kStoch>(p, x, y, n, sat, rc);
  }
}

MFQAT_AVX2 void quantize_avx2(const KernelParams& p, const float* x, std::int64_t n, std::uint8_t* packed,
                              std::uint8_t* scales, const RoundCtx& rc) {
  switch (rc.mode) {
    case Rounding::NearestEven: return quantize_avx2_t<kEven>(p, x, n, packed, scales, rc);
    case Rounding::NearestAway: return quantize_avx2_t<kAway>(p, x, n, packed, scales, rc);
    case Rounding::Stochastic: return quantize_avx2_t<kStoch>(p, x, n, packed, scales, rc);
  }
}

}  // namespace

const KernelTable* avx2_kernels() {
  static const KernelTable t{fake_quantize_avx2, quantize_avx2, dequantize_avx2};
  return &t;
}

}  // namespace mfqat::mx::detail
