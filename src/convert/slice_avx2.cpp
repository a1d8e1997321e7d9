// AVX2 slice kernel for 8-bit sources and blocks of 32: one block = one 32-byte vector.
// - canonical test: no magnitude above max_code, at least one in the top binade;
// - code table: 128 entries as eight 16-entry vpshufb lookups merged by a blend tree on the
//   magnitude's bits 4..6;
// - packing: 32 B-bit codes compacted in 16-, 32-, 64-bit steps, then one vpshufb per lane.
// Other plans (narrower sources, other block sizes) and a partial last block use the scalar
// kernel; non-canonical blocks go through requant_block. The output is bit-identical.
#include <immintrin.h>

#include <cstring>

#include "slice_internal.h"

#define MFQAT_AVX2 __attribute__((target("avx2,fma")))

namespace mfqat::convert::detail {
namespace {

struct alignas(32) Consts {
  __m256i tab[8];
  __m256i low7, nib, sign, zero, dmask, maxcode, top, m16lo, m16hi, m32hi, m64hi, gather;
  __m128i sshift, s1, s2, s3;
  __m256i rnd, one, lowmask, dmax;  // MXINT8 -> MXINTB: rounded shift
};

// MXINT8 -> MXINTB magnitudes: round-half-even right shift by 8-B, clamped to 2^(B-1)-1; equal to
// the table (built from the codec) by construction, checked by the slice tests.
MFQAT_AVX2 inline __m256i int_shift(const Consts& k, __m256i mag) {
  const __m256i q = _mm256_and_si256(_mm256_srl_epi16(mag, k.sshift), k.lowmask);  // mag >> s, per byte
  const __m256i odd = _mm256_and_si256(q, k.one);
  const __m256i sum = _mm256_add_epi8(_mm256_add_epi8(mag, k.rnd), odd);          // <= 127 + 2^(s-1): fits a byte
  const __m256i t = _mm256_and_si256(_mm256_srl_epi16(sum, k.sshift), k.lowmask);
  return _mm256_min_epu8(t, k.dmax);
}

MFQAT_AVX2 inline __m256i lookup(const Consts& k, __m256i mag) {
  const __m256i lo = _mm256_and_si256(mag, k.nib);
  const __m256i t0 = _mm256_shuffle_epi8(k.tab[0], lo), t1 = _mm256_shuffle_epi8(k.tab[1], lo);
  const __m256i t2 = _mm256_shuffle_epi8(k.tab[2], lo), t3 = _mm256_shuffle_epi8(k.tab[3], lo);
  const __m256i t4 = _mm256_shuffle_epi8(k.tab[4], lo), t5 = _mm256_shuffle_epi8(k.tab[5], lo);
  const __m256i t6 = _mm256_shuffle_epi8(k.tab[6], lo), t7 = _mm256_shuffle_epi8(k.tab[7], lo);
  // blendv picks by each byte's top bit: move magnitude bits 4, 5, 6 there in turn
  const __m256i b4 = _mm256_slli_epi16(mag, 3), b5 = _mm256_slli_epi16(mag, 2), b6 = _mm256_slli_epi16(mag, 1);
  const __m256i u01 = _mm256_blendv_epi8(t0, t1, b4), u23 = _mm256_blendv_epi8(t2, t3, b4);
  const __m256i u45 = _mm256_blendv_epi8(t4, t5, b4), u67 = _mm256_blendv_epi8(t6, t7, b4);
  const __m256i v03 = _mm256_blendv_epi8(u01, u23, b5), v47 = _mm256_blendv_epi8(u45, u67, b5);
  return _mm256_blendv_epi8(v03, v47, b6);
}

// Packs 32 codes (one per byte, < 2^B) as a B-bit little-endian stream: writes 4B bytes at o
// (and up to 16 - 2B bytes of scratch after them).
MFQAT_AVX2 inline void pack32(const Consts& k, __m256i v, int bits, std::uint8_t* o) {
  if (bits == 8) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), v);
    return;
  }
  v = _mm256_or_si256(_mm256_and_si256(v, k.m16lo), _mm256_srl_epi16(_mm256_and_si256(v, k.m16hi), k.s1));
  v = _mm256_or_si256(_mm256_andnot_si256(k.m32hi, v), _mm256_srl_epi32(_mm256_and_si256(v, k.m32hi), k.s2));
  v = _mm256_or_si256(_mm256_andnot_si256(k.m64hi, v), _mm256_srl_epi64(_mm256_and_si256(v, k.m64hi), k.s3));
  v = _mm256_shuffle_epi8(v, k.gather);  // per 128-bit lane: the two B-byte groups, contiguous
  _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm256_castsi256_si128(v));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 2 * bits), _mm256_extracti128_si256(v, 1));
}

MFQAT_AVX2 void slice_run_avx2_impl(const SlicePlan& p, const std::uint8_t* codes, const std::uint8_t* scales,
                                    std::int64_t n, std::uint8_t* out, std::uint8_t* out_scales, RunCounts* cnt) {
  if (p.src.bits != 8 || p.src.block_size != 32) {
    slice_run_scalar(p, codes, scales, n, out, out_scales, cnt);
    return;
  }
  const int B = p.dst.bits;
  Consts k;
  for (int i = 0; i < 8; ++i) {
    k.tab[i] = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p.map + 16 * i)));
  }
  k.low7 = _mm256_set1_epi8(0x7f);
  k.nib = _mm256_set1_epi8(0x0f);
  k.sign = _mm256_set1_epi8(static_cast<char>(0x80));
  k.zero = _mm256_setzero_si256();
  k.dmask = _mm256_set1_epi8(static_cast<char>((1u << B) - 1));
  k.maxcode = _mm256_set1_epi8(static_cast<char>(p.src.max_code));
  k.top = _mm256_set1_epi8(static_cast<char>(p.top_code));
  k.m16lo = _mm256_set1_epi16(0x00ff);
  k.m16hi = _mm256_set1_epi16(static_cast<short>(0xff00));
  k.m32hi = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  k.m64hi = _mm256_set1_epi64x(static_cast<long long>(0xffffffff00000000ull));
  alignas(32) std::uint8_t g[32];
  for (int lane = 0; lane < 2; ++lane) {
    for (int j = 0; j < 16; ++j) {
      g[16 * lane + j] = j < B ? static_cast<std::uint8_t>(j) : j < 2 * B ? static_cast<std::uint8_t>(8 + j - B) : 0x80;
    }
  }
  k.gather = _mm256_load_si256(reinterpret_cast<const __m256i*>(g));
  k.sshift = _mm_cvtsi32_si128(8 - B);
  k.s1 = _mm_cvtsi32_si128(8 - B);
  k.s2 = _mm_cvtsi32_si128(16 - 2 * B);
  k.s3 = _mm_cvtsi32_si128(32 - 4 * B);
  const int sh = 8 - B;
  k.rnd = _mm256_set1_epi8(static_cast<char>(sh > 0 ? (1 << (sh - 1)) - 1 : 0));
  k.one = _mm256_set1_epi8(sh > 0 ? 1 : 0);
  k.lowmask = _mm256_set1_epi8(static_cast<char>(0xff >> sh));
  k.dmax = _mm256_set1_epi8(static_cast<char>(p.dst.max_code));
  const bool is_int = p.src.is_int;
  alignas(32) std::uint8_t buf[32];
  const std::int64_t run_bytes = (n * B + 7) / 8;
  std::int64_t b0 = 0, blk = 0;
  for (; b0 + 32 <= n; b0 += 32, ++blk) {
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + b0));
    const __m256i mag = is_int ? _mm256_abs_epi8(c) : _mm256_and_si256(c, k.low7);  // abs(-128) = 0x80: not canonical
    const std::uint8_t s = scales[blk];
    // canonical(): all magnitudes <= max_code, one >= top_code, scale in range
    const bool none_above = _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_max_epu8(mag, k.maxcode), k.maxcode)) == -1;
    const bool one_top = _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_max_epu8(mag, k.top), mag)) != 0;
    const int ns = static_cast<int>(s) + p.shift;
    __m256i r;
    if (none_above && one_top && s != mx::kE8M0Nan && s <= p.max_scale && ns >= 0 && ns <= 254) {
      out_scales[blk] = static_cast<std::uint8_t>(ns);
      r = is_int ? int_shift(k, mag) : lookup(k, mag);
      if (is_int) {
        r = _mm256_blendv_epi8(r, _mm256_and_si256(_mm256_sub_epi8(k.zero, r), k.dmask), c);  // c's top bit = negative
      } else {
        // sign bit 7 -> bit B-1 (a 16-bit shift keeps each byte's bit inside its byte)
        r = _mm256_or_si256(r, _mm256_srl_epi16(_mm256_and_si256(c, k.sign), k.sshift));
      }
      ++cnt->table;
    } else {
      out_scales[blk] = requant_block(p, codes + b0, s, 32, buf);
      r = _mm256_load_si256(reinterpret_cast<const __m256i*>(buf));
      ++cnt->requant;
    }
    // pack32 writes 16 - 2B scratch bytes past the block; directly into the output only while
    // they stay inside this run (later blocks of the run overwrite them, in order).
    if (b0 * B / 8 + 2 * B + 16 <= run_bytes) {
      pack32(k, r, B, out + b0 * B / 8);
    } else {
      alignas(32) std::uint8_t tmp[64];
      pack32(k, r, B, tmp);
      std::memcpy(out + b0 * B / 8, tmp, 4 * static_cast<std::size_t>(B));
    }
  }
  if (b0 < n) slice_run_scalar(p, codes + b0, scales + blk, n - b0, out + b0 * B / 8, out_scales + blk, cnt);
}

}  // namespace

SliceRunFn slice_run_avx2() { return slice_run_avx2_impl; }

}  // namespace mfqat::convert::detail
