// The bf16 MX GEMM (AVX-512 BF16: vdpbf16ps) for the formats the int8 GEMM cannot take: MXFP8
// (E4M3, E5M2) and MXFP6 E3M2, whose element values need more than 8 integer bits after one
// power of two. Every such value times its block's E8M0 scale has at most 3 significant bits,
// so it is a bf16 exactly (unless it falls below bf16's normal range, 2^-126, where the
// instruction reads it as 0); the activations are rounded once to bf16 (nearest even, relative
// error <= 2^-8). Loop nest, per thread and per 16 weight rows (one micro-panel):
//
//   for each k-panel of KB blocks (KB * 32 columns):
//     decode the 16 rows' codes, times their block scales, to bf16 in the layout the tile reads:
//       per block, 16 vectors of 64 bytes, vector g holding elements 2g, 2g+1 of the 16 rows
//       (dword lane r = row r)
//     for each tile of up to NR activation rows: 16 x NR fp32 accumulators, per block 16
//       vdpbf16ps per activation row, the row's element pair broadcast from memory
//
// The scale rides in the weights, so nothing happens per block but the dot products. Each
// output is accumulated by one thread in column order whatever the thread count, the batch or
// the tile of rows, so results do not depend on them; against the exact product the error is
// the activations' rounding plus fp32 summation (tested with a stated bound).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 AVX-512 headers (GCC bug 105593)
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include "gemm_internal.h"

#define MFQAT_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c")))

namespace mfqat::runtime::detail {

namespace {

constexpr int kMR = 16;           // weight rows per micro-panel (one zmm of fp32)
constexpr int kNR = 12;           // activation rows per register tile
constexpr std::int64_t kKB = 8;   // blocks per k-panel: 8 KiB of bf16 weights + NR rows' 512 bytes each, in L1

struct alignas(64) PanelB {
  std::uint32_t w[kKB * 16 * kMR];  // [block][pair g][row r]: bf16 elements 2g (low) and 2g + 1 (high)
};

// Rows [r0, r0 + rn) (rn <= 16), blocks [b0, b0 + nbk) of w into p, rows past the matrix 0.
MFQAT_BF16 void pack(const Decoder& d, const MxView& w, std::int64_t r0, int rn, std::int64_t b0, std::int64_t nbk, PanelB& p) {
  const mx::Format& f = *w.format;
  const std::int64_t rb = static_cast<std::int64_t>(f.packed_row_bytes(w.cols)), nb = (w.cols + 31) / 32;
  alignas(64) std::uint8_t codes[32];
  alignas(64) std::uint32_t pairs[16];
  for (std::int64_t b = 0; b < nbk; ++b) {
    const std::int64_t gb = b0 + b;
    std::uint32_t* dst = p.w + b * 16 * kMR;
    const std::int64_t len = std::min<std::int64_t>(32, w.cols - gb * 32);
    for (int r = 0; r < kMR; ++r) {
      if (r >= rn) {
        for (int g = 0; g < 16; ++g) dst[g * kMR + r] = 0;
        continue;
      }
      const std::uint8_t* row = w.elements + (r0 + r) * rb;
      if (len == 32 && f.bits == 8) {
        std::memcpy(codes, row + gb * 32, 32);
      } else {
        mx::unpack_codes_at(row, gb * 32 * f.bits, len, f.bits, codes);
      }
      const __mmask32 live = len == 32 ? ~__mmask32{0} : static_cast<__mmask32>((std::uint64_t{1} << len) - 1);
      const __m512 s = _mm512_set1_ps(kScales.v[w.scales[(r0 + r) * nb + gb]]);
      const __m256i c = _mm256_maskz_loadu_epi8(live, codes);
      const __m512 lo = _mm512_mul_ps(_mm512_i32gather_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(c)), d.lut, 4), s);
      const __m512 hi = _mm512_mul_ps(_mm512_i32gather_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(c, 1)), d.lut, 4), s);
      // elements past the row's end are 0 whatever the scale (a NaN scale must not reach them)
      const __m512i v = _mm512_maskz_mov_epi16(live, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
      _mm512_store_si512(pairs, v);
      for (int g = 0; g < 16; ++g) dst[g * kMR + r] = pairs[g];
    }
  }
}

// The 16 x NR tile over one k-panel: activation rows j0.. (bf16 pairs, xs dwords per row, from
// block b0), outputs y[j * rows + r0 .. + 16) under mask m; first: the k-panel that starts the sums.
template <int NR>
MFQAT_BF16 void tile(const PanelB& p, std::int64_t nbk, const std::uint32_t* x, std::int64_t xs, std::int64_t j0, std::int64_t b0, float* y,
                     std::int64_t rows, __mmask16 m, bool first) {
  __m512 F[NR];
#pragma GCC unroll 12
  for (int j = 0; j < NR; ++j) F[j] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, y + (j0 + j) * rows);
  const std::uint32_t* xb = x + j0 * xs + b0 * 16;
  for (std::int64_t b = 0; b < nbk; ++b) {
    const std::uint32_t* wb = p.w + b * 16 * kMR;
#pragma GCC unroll 4
    for (int g = 0; g < 16; ++g) {
      const __m512bh W = reinterpret_cast<__m512bh>(_mm512_load_si512(wb + g * kMR));
#pragma GCC unroll 12
      for (int j = 0; j < NR; ++j) {
        F[j] = _mm512_dpbf16_ps(F[j], W, reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(xb[j * xs + b * 16 + g]))));
      }
    }
  }
#pragma GCC unroll 12
  for (int j = 0; j < NR; ++j) _mm512_mask_storeu_ps(y + (j0 + j) * rows, m, F[j]);
}

using TileFn = void (*)(const PanelB&, std::int64_t, const std::uint32_t*, std::int64_t, std::int64_t, std::int64_t, float*, std::int64_t, __mmask16, bool);
template <int... N>
constexpr auto make_tiles(std::integer_sequence<int, N...>) {
  return std::array<TileFn, sizeof...(N)>{tile<N + 1>...};
}
const auto kTiles = make_tiles(std::make_integer_sequence<int, kNR>{});

MFQAT_BF16 void gemm_bf16_512(const Decoder& d, const MxView& w, const Bf16Rows& a, float* y, std::int64_t r0, std::int64_t r1) {
  thread_local PanelB p;
  const std::int64_t nb = a.nb, xs = nb * 16;
  for (std::int64_t rp = r0; rp < r1; rp += kMR) {
    const int rn = static_cast<int>(std::min<std::int64_t>(kMR, r1 - rp));
    const __mmask16 m = static_cast<__mmask16>((1u << rn) - 1);
    for (std::int64_t b0 = 0; b0 < nb; b0 += kKB) {
      const std::int64_t nbk = std::min(kKB, nb - b0);
      pack(d, w, rp, rn, b0, nbk, p);
      for (std::int64_t j0 = 0; j0 < a.n; j0 += kNR) {
        const int nr = static_cast<int>(std::min<std::int64_t>(kNR, a.n - j0));
        kTiles[static_cast<std::size_t>(nr - 1)](p, nbk, a.x.data(), xs, j0, b0, y + rp, w.rows, m, b0 == 0);
      }
    }
  }
}

// x [n, cols] to bf16 pairs, nearest even, zero-padded to whole blocks; marks rows with a NaN or Inf.
MFQAT_BF16 void prepare_bf16(const float* x, std::int64_t n, std::int64_t cols, Bf16Rows& a) {
  a.n = n;
  a.nb = (cols + 31) / 32;
  const std::int64_t xs = a.nb * 16;
  a.x.assign(static_cast<std::size_t>(n * xs), 0u);
  a.bad.assign(static_cast<std::size_t>(n), 0);
  for (std::int64_t j = 0; j < n; ++j) {
    const float* xr = x + j * cols;
    auto* dst = reinterpret_cast<std::uint16_t*>(a.x.data() + j * xs);
    __mmask16 bad = 0;
    for (std::int64_t c = 0; c < cols; c += 16) {
      const __mmask16 live = cols - c >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << (cols - c)) - 1);
      const __m512 v = _mm512_maskz_loadu_ps(live, xr + c);
      // |v| = Inf or NaN: the exponent field all ones
      bad |= _mm512_mask_cmpeq_epi32_mask(live, _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7F800000)), _mm512_set1_epi32(0x7F800000));
      _mm256_mask_storeu_epi16(dst + c, live, reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)));
    }
    a.bad[static_cast<std::size_t>(j)] = bad != 0;
  }
}

}  // namespace

GemmBf16Fn avx512_gemm_bf16() { return __builtin_cpu_supports("avx512bf16") ? gemm_bf16_512 : nullptr; }
Bf16PrepareFn avx512_bf16_prepare() { return __builtin_cpu_supports("avx512bf16") ? prepare_bf16 : nullptr; }

}  // namespace mfqat::runtime::detail
