// Internal: the per-pair plan shared by the scalar and AVX2 slice kernels.
#pragma once

#include <cstdint>

#include "kernels.h"
#include "mfqat/convert/slice.h"

namespace mfqat::convert::detail {

struct SlicePlan {
  mx::detail::KernelParams src, dst;
  int shift = 0;                  // emax_src - emax_dst: scale byte delta of canonical blocks
  std::uint32_t top_code = 0;     // first magnitude code of the source's top binade
  int max_scale = 254;            // canonical blocks need scale byte <= this (dequantized values finite)
  alignas(32) std::uint8_t map[128] = {};  // source magnitude code -> target magnitude code
};

// Per-run counters (summed by the driver).
struct RunCounts {
  std::int64_t table = 0, requant = 0;
};

// One run of n elements of a row (starting on a block boundary), already unpacked to one
// source code per byte; writes the packed target bit stream (exactly the run's packed bytes,
// from its first byte) and the target scales.
using SliceRunFn = void (*)(const SlicePlan&, const std::uint8_t* codes, const std::uint8_t* scales, std::int64_t n,
                            std::uint8_t* out_packed, std::uint8_t* out_scales, RunCounts*);

void slice_run_scalar(const SlicePlan&, const std::uint8_t*, const std::uint8_t*, std::int64_t, std::uint8_t*,
                      std::uint8_t*, RunCounts*);
SliceRunFn slice_run_avx2();  // nullptr when not compiled in; handles any plan (falls back per block)

// One block the slow way: decode through fp32, quantize with the mx core. Returns the scale byte.
std::uint8_t requant_block(const SlicePlan& p, const std::uint8_t* codes, std::uint8_t scale, std::int64_t len,
                           std::uint8_t* out);

// Table path for one block when it is canonical; returns false (writing nothing) otherwise.
inline bool canonical(const SlicePlan& p, std::uint32_t maxmag, std::uint8_t s) {
  const int ns = static_cast<int>(s) + p.shift;
  return s != mx::kE8M0Nan && maxmag >= p.top_code && maxmag <= p.src.max_code && s <= p.max_scale && ns >= 0 &&
         ns <= 254;
}

inline std::uint32_t magnitude(const mx::detail::KernelParams& k, std::uint32_t code) {
  if (k.is_int) return (code >> (k.bits - 1)) ? (1u << k.bits) - code : code;
  return code & ((1u << (k.bits - 1)) - 1);
}

}  // namespace mfqat::convert::detail
