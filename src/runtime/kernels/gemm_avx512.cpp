// The int8 MX GEMM on AVX-512 VNNI (F + BW + VL + DQ + VNNI; per-function target attributes,
// chosen at run time). Loop nest, per thread and per 16 weight rows (one micro-panel):
//
//   for each k-panel of KB blocks (KB * 32 columns):
//     pack the 16 rows' codes of the panel as unsigned bytes (integer + off) in the layout the
//       kernel reads: per block, 8 vectors of 64 bytes, vector g holding elements 4g..4g+3 of
//       the 16 rows (dword lane r = row r); plus the 16 rows' block scales times mul as fp32
//     for each tile of up to NR activation rows: the 16 x NR register tile (below)
//
// The 16 x NR tile keeps, per activation row j, an int32 vector (16 rows' block dots) and an
// fp32 vector (16 rows' sums). Per block: I_j = -off * sum(q_j) (the correction that makes the
// unsigned weights exact), then 8 vpdpbusd per j against one weight vector each, the activation
// dword broadcast from memory (the s8 operand); then F_j = fma(float(I_j), ws * s_j, F_j). Integer
// sums are exact in any order and the scale step is the reference's, so the result is the
// scalar reference's bit for bit (tests assert equality). The k-panel keeps the packed weights
// (KB * 576 bytes) and NR activation rows (NR * KB * 32 bytes) in L1; F goes through y between
// k-panels (a float round-trips exactly).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 AVX-512 headers (GCC bug 105593)
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include "gemm_internal.h"

#define MFQAT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define MFQAT_AVX512_VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,avx2,fma,f16c")))

namespace mfqat::runtime::detail {

namespace {

constexpr int kMR = kPanelRows;  // weight rows per micro-panel (one zmm of int32 / fp32)
constexpr int kNR = 12;          // activation rows per register tile: 12 int32 + 12 fp32 zmm
constexpr std::int64_t kKB = kPanelBlocks;

// One whole block of 16 rows of 2-, 3-, 5-, 6- or 7-bit codes (AVX512-VBMI): per group of 8
// codes (B bytes, little-endian bit order), two qword gathers (rows 0-7, 8-15), vpmultishiftqb
// moves code k of each qword to byte k (bit offset k * B), a mask, the unsigned table by vpermb
// (vpermi2b for 7 bits: 128 entries), then the low / high dwords of the 16 qwords are the
// panel's vectors for elements 8g..8g+3 / 8g+4..8g+7. Reads 8 bytes at each group, so the
// caller keeps the last row's last group inside the matrix.
MFQAT_AVX512_VBMI void pack_block_vbmi(const IntCodes& ic, const std::uint8_t* base, std::int64_t rb, int bits, std::uint8_t* dst) {
  const __m256i vlo = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(static_cast<int>(rb)));
  const __m256i vhi = _mm256_add_epi32(vlo, _mm256_set1_epi32(static_cast<int>(8 * rb)));
  std::uint64_t sh = 0;
  for (int k = 0; k < 8; ++k) sh |= static_cast<std::uint64_t>(k * bits) << (8 * k);
  const __m512i ctrl = _mm512_set1_epi64(static_cast<long long>(sh));
  const __m512i mask = _mm512_set1_epi8(static_cast<char>((1 << bits) - 1));
  alignas(64) std::uint8_t t[128] = {};
  for (int c = 0; c < (1 << bits); ++c) t[c] = static_cast<std::uint8_t>(ic.ints[c] + ic.off);
  const __m512i t0 = _mm512_load_si512(t), t1 = _mm512_load_si512(t + 64);
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (int g = 0; g < 4; ++g) {
    __m512i v[2];
    for (int h = 0; h < 2; ++h) {
      const __m512i raw = _mm512_i32gather_epi64(h ? vhi : vlo, base + g * bits, 1);
      const __m512i c = _mm512_and_si512(_mm512_multishift_epi64_epi8(ctrl, raw), mask);
      v[h] = bits <= 6 ? _mm512_permutexvar_epi8(c, t0) : _mm512_permutex2var_epi8(t0, c, t1);
    }
    _mm512_store_si512(dst + (2 * g) * 64, _mm512_permutex2var_epi32(v[0], even, v[1]));
    _mm512_store_si512(dst + (2 * g + 1) * 64, _mm512_permutex2var_epi32(v[0], odd, v[1]));
  }
}

// Packs rows [r0, r0 + rn) (rn <= 16), blocks [b0, b0 + nbk) of w into p: whole blocks of 16
// rows of MXFP4-like (4-bit) or MXINT8-like (8-bit identity) codes by dword gathers, of the other
// widths by qword gathers and vpmultishiftqb where VBMI is allowed, the rest by the portable
// pack_codes.
MFQAT_AVX512 void pack(const IntCodes& ic, const MxView& w, std::int64_t r0, int rn, std::int64_t b0, std::int64_t nbk, Panel& p, bool vbmi) {
  const int bits = w.format->bits;
  const std::int64_t rb = static_cast<std::int64_t>(w.format->packed_row_bytes(w.cols)), full = w.cols / 32;
  const __m512i vidx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(static_cast<int>(rb)));
  // 4-bit: the unsigned table in every 128-bit lane, the byte patterns, the nibble mask
  alignas(16) std::uint8_t t16[16];
  for (int c = 0; c < 16; ++c) t16[c] = static_cast<std::uint8_t>(ic.ints[c] + ic.off);
  const __m512i lut = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(t16)));
  const __m512i pa = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 1, 1, 4, 4, 5, 5, 8, 8, 9, 9, 12, 12, 13, 13));
  const __m512i pb = _mm512_broadcast_i32x4(_mm_setr_epi8(2, 2, 3, 3, 6, 6, 7, 7, 10, 10, 11, 11, 14, 14, 15, 15));
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __mmask64 odd = 0xAAAAAAAAAAAAAAAAull;
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));  // MXINT8, off = 128: int + 128 = code ^ 0x80
  for (std::int64_t b = 0; b < nbk; ++b) {
    const std::int64_t gb = b0 + b;
    std::uint8_t* dst = p.w + b * 8 * 64;
    pack_scales(ic, w, r0, rn, gb, b, p);
    if (rn == kMR && gb < full && ic.kind == IntCodes::Kind::Nibble) {
      // 16 rows' dword g' (elements 8g'..8g'+7: byte i holds element 2i low, 2i+1 high) by one
      // gather; bytes (b0, b0, b1, b1) then low / high nibble alternately give elements
      // 8g'..8g'+3, bytes (b2, b2, b3, b3) elements 8g'+4..8g'+7; then the table lookup
      const std::uint8_t* base = w.elements + r0 * rb + gb * 16;
      for (int g = 0; g < 4; ++g) {
        const __m512i v = _mm512_i32gather_epi32(vidx, base + 4 * g, 1);
        for (int h = 0; h < 2; ++h) {
          const __m512i t = _mm512_shuffle_epi8(v, h ? pb : pa);
          const __m512i lo = _mm512_and_si512(t, m4), hi = _mm512_and_si512(_mm512_srli_epi16(t, 4), m4);
          const __m512i nib = _mm512_mask_blend_epi8(odd, lo, hi);
          _mm512_store_si512(dst + (2 * g + h) * 64, _mm512_shuffle_epi8(lut, nib));
        }
      }
    } else if (rn == kMR && gb < full && ic.kind == IntCodes::Kind::Byte) {
      const std::uint8_t* base = w.elements + r0 * rb + gb * 32;
      for (int g = 0; g < 8; ++g) _mm512_store_si512(dst + g * 64, _mm512_xor_si512(_mm512_i32gather_epi32(vidx, base + 4 * g, 1), flip));
    } else if (vbmi && rn == kMR && gb < full && ic.kind == IntCodes::Kind::Generic && bits < 8 &&
               (r0 + 15) * rb + gb * 4 * bits + 3 * bits + 8 <= w.rows * rb) {
      pack_block_vbmi(ic, w.elements + r0 * rb + gb * 4 * bits, rb, bits, dst);
    } else {
      pack_codes(ic, w, r0, rn, gb, b, p);
    }
  }
}

// The 16 x NR tile over one k-panel: activation rows j0.. (q, scale, corr at block b0), outputs
// y[j * rows + r0 .. + 16) under mask m; first: the k-panel that starts the sums.
// kNib: the codes of a NibblePanel (pw: its w), looked up in lut16 (the unsigned bytes of the
// 16 codes); else a Panel's bytes. ps: the panel's scales.
template <int NR, bool kNib>
MFQAT_AVX512 void tile(const std::uint8_t* pw, const float* ps, const std::uint8_t* lut16, std::int64_t nbk, const Q8Rows& a, std::int64_t j0, std::int64_t b0,
                       float* y, std::int64_t rows, __mmask16 m, bool first) {
  __m512 F[NR];
  const std::int64_t nb = a.nb;
#pragma GCC unroll 12
  for (int j = 0; j < NR; ++j) F[j] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, y + (j0 + j) * rows);
  const std::int8_t* q = a.q.data() + (j0 * nb + b0) * 32;
  const float* xs = a.scale.data() + j0 * nb + b0;
  const std::int32_t* corr = a.corr.data() + j0 * nb + b0;
  __m512i lut = _mm512_setzero_si512();
  if constexpr (kNib) lut = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut16)));
  for (std::int64_t b = 0; b < nbk; ++b) {
    __m512i I[NR];
#pragma GCC unroll 12
    for (int j = 0; j < NR; ++j) I[j] = _mm512_set1_epi32(corr[j * nb + b]);
    const std::uint8_t* wb = pw + b * (kNib ? 4 : 8) * 64;
    __m512i hi = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      __m512i W;
      if constexpr (kNib) {
        if (g % 2 == 0) {
          const __m512i v = _mm512_load_si512(wb + (g / 2) * 64), m4 = _mm512_set1_epi8(0x0F);
          W = _mm512_shuffle_epi8(lut, _mm512_and_si512(v, m4));
          hi = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
        } else {
          W = hi;
        }
      } else {
        W = _mm512_load_si512(wb + g * 64);
      }
#pragma GCC unroll 12
      for (int j = 0; j < NR; ++j) {
        std::int32_t xv;
        std::memcpy(&xv, q + (j * nb + b) * 32 + 4 * g, 4);
        I[j] = _mm512_dpbusd_epi32(I[j], W, _mm512_set1_epi32(xv));
      }
    }
    const __m512 sw = _mm512_load_ps(ps + b * kMR);
#pragma GCC unroll 12
    for (int j = 0; j < NR; ++j) F[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(I[j]), _mm512_mul_ps(sw, _mm512_set1_ps(xs[j * nb + b])), F[j]);
  }
#pragma GCC unroll 12
  for (int j = 0; j < NR; ++j) _mm512_mask_storeu_ps(y + (j0 + j) * rows, m, F[j]);
}

using TileFn = void (*)(const std::uint8_t*, const float*, const std::uint8_t*, std::int64_t, const Q8Rows&, std::int64_t, std::int64_t, float*, std::int64_t,
                        __mmask16, bool);
template <bool kNib, int... N>
constexpr auto make_tiles(std::integer_sequence<int, N...>) {
  return std::array<TileFn, sizeof...(N)>{tile<N + 1, kNib>...};
}
const auto kTiles = make_tiles<false>(std::make_integer_sequence<int, kNR>{});
const auto kNibTiles = make_tiles<true>(std::make_integer_sequence<int, kNR>{});

template <bool kVbmi>
MFQAT_AVX512 void gemm_q8_512(const IntCodes& ic, const MxView& w, const Q8Rows& a, float* y, std::int64_t r0, std::int64_t r1) {
  thread_local Panel p;  // 9 KiB per thread, L1-resident while its k-panel runs
  const std::int64_t nb = a.nb;
  for (std::int64_t rp = r0; rp < r1; rp += kMR) {
    const int rn = static_cast<int>(std::min<std::int64_t>(kMR, r1 - rp));
    const __mmask16 m = static_cast<__mmask16>((1u << rn) - 1);
    for (std::int64_t b0 = 0; b0 < nb; b0 += kKB) {
      const std::int64_t nbk = std::min(kKB, nb - b0);
      pack(ic, w, rp, rn, b0, nbk, p, kVbmi);
      for (std::int64_t j0 = 0; j0 < a.n; j0 += kNR) {
        const int nr = static_cast<int>(std::min<std::int64_t>(kNR, a.n - j0));
        kTiles[static_cast<std::size_t>(nr - 1)](p.w, p.s, nullptr, nbk, a, j0, b0, y + rp, w.rows, m, b0 == 0);
      }
    }
  }
}

// gemm_q8_512's loop on panels packed once (repack_q8): nothing to pack, the tiles read the
// panels where they lie, so a step of a few rows streams the weights once at memory speed.
MFQAT_AVX512 void gemm_q8_panels_512(const Q8Panels& pk, const Q8Rows& a, float* y, std::int64_t p0, std::int64_t p1) {
  const auto& tiles = pk.nibble ? kNibTiles : kTiles;
  for (std::int64_t p = p0; p < p1; ++p) {
    const std::int64_t rp = p * kMR;
    const int rn = static_cast<int>(std::min<std::int64_t>(kMR, pk.rows - rp));
    const __mmask16 m = static_cast<__mmask16>((1u << rn) - 1);
    for (std::int64_t kp = 0; kp < pk.nkp; ++kp) {
      const std::int64_t b0 = kp * kKB, nbk = std::min(kKB, pk.nb - b0);
      const std::uint8_t* pw = pk.bytes.data() + pk.at(p, kp);
      const float* ps = reinterpret_cast<const float*>(pw + nbk * pk.block_bytes);
      // the whole next k-panel, while the tiles work on this one: a few rows' worth of compute
      // per k-panel does not give the hardware prefetcher time enough to stream the weights
      const char* next = reinterpret_cast<const char*>(ps + nbk * kMR);
      for (std::int64_t l = 0; l < nbk * (pk.block_bytes + 64) / 64; ++l) _mm_prefetch(next + 64 * l, _MM_HINT_T0);
      for (std::int64_t j0 = 0; j0 < a.n; j0 += kNR) {
        const int nr = static_cast<int>(std::min<std::int64_t>(kNR, a.n - j0));
        tiles[static_cast<std::size_t>(nr - 1)](pw, ps, pk.lut, nbk, a, j0, b0, y + rp, pk.rows, m, kp == 0);
      }
    }
  }
}

// Panels [p0, p1) of pk from w by the kernel's own packing into a Panel, then copied (a nibble
// panel through the inverse of the code table: any code of the value will do).
MFQAT_AVX512 void repack_512(const IntCodes& ic, const MxView& w, Q8Panels& pk, std::int64_t p0, std::int64_t p1, bool vbmi) {
  std::uint8_t inv[256] = {};
  for (int c = 15; c >= 0 && pk.nibble; --c) inv[pk.lut[c]] = static_cast<std::uint8_t>(c);
  thread_local Panel tmp;
  for (std::int64_t p = p0; p < p1; ++p) {
    const std::int64_t rp = p * kMR;
    const int rn = static_cast<int>(std::min<std::int64_t>(kMR, w.rows - rp));
    for (std::int64_t kp = 0; kp < pk.nkp; ++kp) {
      const std::int64_t b0 = kp * kKB, nbk = std::min(kKB, pk.nb - b0);
      pack(ic, w, rp, rn, b0, nbk, tmp, vbmi && cpu_vbmi() && !pk.nibble);
      std::uint8_t* pw = pk.bytes.data() + pk.at(p, kp);
      if (pk.nibble) {
        for (std::int64_t b = 0; b < nbk; ++b) {
          for (int h = 0; h < 4; ++h) {
            const std::uint8_t* lo = tmp.w + (b * 8 + 2 * h) * 64;
            for (int i = 0; i < 64; ++i) pw[(b * 4 + h) * 64 + i] = static_cast<std::uint8_t>(inv[lo[i]] | (inv[lo[64 + i]] << 4));
          }
        }
      } else {
        std::copy_n(tmp.w, nbk * 8 * 64, pw);
      }
      std::copy_n(tmp.s, nbk * kMR, reinterpret_cast<float*>(pw + nbk * pk.block_bytes));
    }
  }
}

}  // namespace

GemmQ8PanelsFn avx512_gemm_q8_panels() { return gemm_q8_panels_512; }
RepackQ8Fn avx512_repack_q8() { return repack_512; }
GemmQ8Fn avx512_gemm_q8() { return gemm_q8_512<false>; }
GemmQ8Fn avx512_gemm_q8_vbmi() { return __builtin_cpu_supports("avx512vbmi") ? gemm_q8_512<true> : nullptr; }

}  // namespace mfqat::runtime::detail
