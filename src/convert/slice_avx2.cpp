// AVX2 slice kernel for 8-bit sources and blocks of 32: one block = one 32-byte vector.
// Magnitude max decides canonical vs requant; the 128-entry code table is eight 16-entry
// vpshufb lookups selected by the magnitude's high nibble. Other plans fall back to the scalar
// kernel, block for block identical.
#include <immintrin.h>

#include "slice_internal.h"

#define MFQAT_AVX2 __attribute__((target("avx2,fma")))

namespace mfqat::convert::detail {
namespace {

MFQAT_AVX2 inline std::uint32_t hmax_epu8(__m256i v) {
  __m128i m = _mm_max_epu8(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epu8(m, _mm_srli_si128(m, 8));
  m = _mm_max_epu8(m, _mm_srli_si128(m, 4));
  m = _mm_max_epu8(m, _mm_srli_si128(m, 2));
  m = _mm_max_epu8(m, _mm_srli_si128(m, 1));
  return static_cast<std::uint32_t>(_mm_cvtsi128_si32(m) & 0xff);
}

MFQAT_AVX2 void slice_run_avx2_impl(const SlicePlan& p, const std::uint8_t* codes, const std::uint8_t* scales,
                                    std::int64_t n, std::uint8_t* out, std::uint8_t* out_scales, RunCounts* cnt) {
  if (p.src.bits != 8 || p.src.block_size != 32) {
    slice_run_scalar(p, codes, scales, n, out, out_scales, cnt);
    return;
  }
  __m256i tab[8];
  for (int k = 0; k < 8; ++k) {
    tab[k] = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p.map + 16 * k)));
  }
  const __m256i low7 = _mm256_set1_epi8(0x7f), nib = _mm256_set1_epi8(0x0f), sign = _mm256_set1_epi8(static_cast<char>(0x80));
  const __m256i zero = _mm256_setzero_si256(), dmask = _mm256_set1_epi8(static_cast<char>((1u << p.dst.bits) - 1));
  const __m128i sshift = _mm_cvtsi32_si128(8 - p.dst.bits);
  const bool is_int = p.src.is_int;
  std::int64_t b0 = 0, blk = 0;
  for (; b0 + 32 <= n; b0 += 32, ++blk) {
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + b0));
    const __m256i mag = is_int ? _mm256_abs_epi8(c) : _mm256_and_si256(c, low7);  // abs(-128) = 0x80: not canonical
    const std::uint8_t s = scales[blk];
    if (!canonical(p, hmax_epu8(mag), s)) {
      out_scales[blk] = requant_block(p, codes + b0, s, 32, out + b0);
      ++cnt->requant;
      continue;
    }
    out_scales[blk] = static_cast<std::uint8_t>(s + p.shift);
    const __m256i lo = _mm256_and_si256(mag, nib);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(mag, 4), nib);
    __m256i r = zero;
    for (int k = 0; k < 8; ++k) {
      const __m256i sel = _mm256_cmpeq_epi8(hi, _mm256_set1_epi8(static_cast<char>(k)));
      r = _mm256_or_si256(r, _mm256_and_si256(sel, _mm256_shuffle_epi8(tab[k], lo)));
    }
    if (is_int) {
      const __m256i neg = _mm256_cmpgt_epi8(zero, c);
      r = _mm256_blendv_epi8(r, _mm256_and_si256(_mm256_sub_epi8(zero, r), dmask), neg);
    } else {
      // sign bit 7 -> bit B_dst-1 (a 16-bit shift keeps each byte's bit inside its byte)
      r = _mm256_or_si256(r, _mm256_srl_epi16(_mm256_and_si256(c, sign), sshift));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + b0), r);
    ++cnt->table;
  }
  if (b0 < n) slice_run_scalar(p, codes + b0, scales + blk, n - b0, out + b0, out_scales + blk, cnt);
}

}  // namespace

SliceRunFn slice_run_avx2() { return slice_run_avx2_impl; }

}  // namespace mfqat::convert::detail
