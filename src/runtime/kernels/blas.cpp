// fp32 baselines: OpenBLAS sgemv / sgemm over the mfqat thread pool (the "fp32" format's
// linears, and the baseline the MX kernels are measured against).
#include <cblas.h>

#include <algorithm>
#include <cstdint>

#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/blas.h"

namespace mfqat::runtime {

// OpenBLAS runs single-threaded inside each part of the mfqat pool. Its own worker threads spin
// (sched_yield) for a long while after every multi-threaded call; on a machine with as many
// threads as cores they then take a core from the next MX GEMV's pool thread (decode, where the
// fp32 head runs once per token; docs/perf.md). The caller's OpenBLAS thread count
// (libtorch's matmuls may use it) is restored after the call.
namespace {
template <class F>
void openblas_on_pool(std::int64_t rows, std::int64_t grain, F&& part) {
  const int prev = openblas_get_num_threads();
  if (prev != 1) openblas_set_num_threads(1);
  parallel_for(rows, grain, part);
  if (prev != 1) openblas_set_num_threads(prev);
}
}  // namespace

void gemv_f32(const float* w, std::int64_t rows, std::int64_t cols, const float* x, float* y) {
  openblas_on_pool(rows, std::max<std::int64_t>(1, (1 << 16) / std::max<std::int64_t>(1, cols)), [&](std::int64_t r0, std::int64_t r1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(r1 - r0), static_cast<int>(cols), 1.0f, w + r0 * cols, static_cast<int>(cols),
                x, 1, 0.0f, y + r0, 1);
  });
}

void gemm_f32(const float* w, std::int64_t rows, std::int64_t cols, const float* x, std::int64_t n, float* y) {
  // Y [n, rows] = X [n, cols] * W^T, the columns of Y (rows of W) split over the pool
  openblas_on_pool(rows, std::max<std::int64_t>(1, (1 << 16) / std::max<std::int64_t>(1, cols * n)), [&](std::int64_t r0, std::int64_t r1) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(r1 - r0), static_cast<int>(cols), 1.0f, x,
                static_cast<int>(cols), w + r0 * cols, static_cast<int>(cols), 0.0f, y + r0, static_cast<int>(rows));
  });
}

}  // namespace mfqat::runtime
