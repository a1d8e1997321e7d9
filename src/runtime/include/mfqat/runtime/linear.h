// One linear layer of the LM at one format (MX-packed or fp32) and its product with a batch of
// activations on the fused MX kernels (gemv.h) or OpenBLAS (blas.h).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <utility>

#include "mfqat/runtime/gemv.h"

namespace mfqat::runtime {

// One linear layer's weight: MX-packed, or fp32 (the "fp32" format). An MX weight in the
// anchor's own format borrows the anchor's bytes (a view into the file mapping or the synthetic
// anchor); a derived one (and an fp32 one) lives in its Weights' arena.
struct Linear {
  bool is_mx = false;
  MxView mx;                   // is_mx: the anchor's bytes or the arena's
  const float* f32 = nullptr;  // fp32: rows x cols in the arena (the head: the engine's)
  std::int64_t rows = 0, cols = 0;
  // is_mx: its codes repacked for the int8 GEMM (repack_q8), where the engine made them; the
  // GEMM packs per call without them (same bits)
  std::shared_ptr<const Q8Panels> panels;
  std::uint64_t bytes() const;  // bytes of this weight in its format
  // y [n, rows] = x [n, cols] W^T with the loops k selects; k.int8_acts: decode (n = 1) with int8
  // activations where the format has an integer path (gemv_q8), fp32 elsewhere.
  void forward(const float* x, std::int64_t n, float* y, const KernelOptions& k = {}) const;
  // Several linears that read the same x (Q, K, V; W1, W3): the same results as forward on each,
  // decode (n = 1, fp32 activations, all MX of one format and width) in one gemv_shared call.
  static void forward_shared(std::initializer_list<std::pair<const Linear*, float*>> ls, const float* x, std::int64_t n,
                             const KernelOptions& k = {}, bool shared = true);
};

}  // namespace mfqat::runtime
