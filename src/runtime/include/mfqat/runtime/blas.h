// fp32 baselines: OpenBLAS cblas_sgemv / cblas_sgemm with W [rows, cols] row-major, the rows
// split over the mfqat thread pool like the MX kernels (OpenBLAS single-threaded in each part:
// its own threads would keep spinning after the call and take cores from the next MX kernel).
#pragma once

#include <cstdint>

namespace mfqat::runtime {

void gemv_f32(const float* w, std::int64_t rows, std::int64_t cols, const float* x, float* y);
void gemm_f32(const float* w, std::int64_t rows, std::int64_t cols, const float* x, std::int64_t n, float* y);

}  // namespace mfqat::runtime
