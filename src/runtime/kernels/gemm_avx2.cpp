// The int8 MX GEMM on plain AVX2 (no VNNI; per-function target attributes, chosen at run time):
// the AVX-512 kernel's loop nest and packed layout (Panel, gemm_internal.h), with 256-bit vectors: a
// 64-byte packed vector is two halves of 8 weight rows, and the register tile is 8 rows x 4
// activation rows. The products are vpmaddubsw (u8 x s8, adjacent pairs summed in int16) then
// vpmaddwd by ones into int32. vpmaddubsw saturates at int16, so the kernel takes only formats
// whose unsigned codes stay <= 129 (IntCodes::fits_maddubs: every pair <= 2 * 129 * 127 =
// 32766): MXFP4, MXINT2-7, MXFP6 E2M3; MXINT8 (codes + 128 up to 255) is left to the fp32 GEMM
// on such CPUs. Exact integers and the reference's scale step: the scalar reference's bits.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include "gemm_internal.h"

#define MFQAT_AVX2 __attribute__((target("avx2,fma")))

namespace mfqat::runtime::detail {

namespace {

constexpr int kMR = kPanelRows;
constexpr int kNR = 4;  // 4 int32 + 4 fp32 ymm, the weights, ones, a product, a broadcast, the scales
constexpr std::int64_t kKB = kPanelBlocks;

// Rows half * 8 .. + 8 of the micro-panel (rn8 of them real) x activation rows j0 .. j0 + NR.
template <int NR>
MFQAT_AVX2 void tile(const Panel& p, int half, std::int64_t nbk, const Q8Rows& a, std::int64_t j0, std::int64_t b0, float* y, std::int64_t rows,
                     int rn8, bool first) {
  const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(rn8), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const std::int64_t nb = a.nb;
  __m256 F[NR];
  for (int j = 0; j < NR; ++j) F[j] = first ? _mm256_setzero_ps() : _mm256_maskload_ps(y + (j0 + j) * rows, mask);
  const std::int8_t* q = a.q.data() + (j0 * nb + b0) * 32;
  const float* xs = a.scale.data() + j0 * nb + b0;
  const std::int32_t* corr = a.corr.data() + j0 * nb + b0;
  const __m256i ones = _mm256_set1_epi16(1);
  for (std::int64_t b = 0; b < nbk; ++b) {
    __m256i I[NR];
    for (int j = 0; j < NR; ++j) I[j] = _mm256_set1_epi32(corr[j * nb + b]);
    const std::uint8_t* wb = p.w + b * 8 * 64 + half * 32;
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      const __m256i W = _mm256_load_si256(reinterpret_cast<const __m256i*>(wb + g * 64));
      for (int j = 0; j < NR; ++j) {
        std::int32_t xv;
        std::memcpy(&xv, q + (j * nb + b) * 32 + 4 * g, 4);
        I[j] = _mm256_add_epi32(I[j], _mm256_madd_epi16(_mm256_maddubs_epi16(W, _mm256_set1_epi32(xv)), ones));
      }
    }
    const __m256 sw = _mm256_load_ps(p.s + b * kMR + half * 8);
    for (int j = 0; j < NR; ++j) F[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I[j]), _mm256_mul_ps(sw, _mm256_set1_ps(xs[j * nb + b])), F[j]);
  }
  for (int j = 0; j < NR; ++j) _mm256_maskstore_ps(y + (j0 + j) * rows, mask, F[j]);
}

using TileFn = void (*)(const Panel&, int, std::int64_t, const Q8Rows&, std::int64_t, std::int64_t, float*, std::int64_t, int, bool);
template <int... N>
constexpr auto make_tiles(std::integer_sequence<int, N...>) {
  return std::array<TileFn, sizeof...(N)>{tile<N + 1>...};
}
const auto kTiles = make_tiles(std::make_integer_sequence<int, kNR>{});

void gemm_q8_256(const IntCodes& ic, const MxView& w, const Q8Rows& a, float* y, std::int64_t r0, std::int64_t r1) {
  thread_local Panel p;
  const std::int64_t nb = a.nb;
  for (std::int64_t rp = r0; rp < r1; rp += kMR) {
    const int rn = static_cast<int>(std::min<std::int64_t>(kMR, r1 - rp));
    for (std::int64_t b0 = 0; b0 < nb; b0 += kKB) {
      const std::int64_t nbk = std::min(kKB, nb - b0);
      for (std::int64_t b = 0; b < nbk; ++b) {
        pack_scales(ic, w, rp, rn, b0 + b, b, p);
        pack_codes(ic, w, rp, rn, b0 + b, b, p);
      }
      for (int half = 0; half < 2 && rn > 8 * half; ++half) {
        const int rn8 = std::min(8, rn - 8 * half);
        for (std::int64_t j0 = 0; j0 < a.n; j0 += kNR) {
          const int nr = static_cast<int>(std::min<std::int64_t>(kNR, a.n - j0));
          kTiles[static_cast<std::size_t>(nr - 1)](p, half, nbk, a, j0, b0, y + rp + 8 * half, w.rows, rn8, b0 == 0);
        }
      }
    }
  }
}

}  // namespace

GemmQ8Fn avx2_gemm_q8() { return gemm_q8_256; }

}  // namespace mfqat::runtime::detail
