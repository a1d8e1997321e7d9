#include "mfqat/runtime/linear.h"

#include <stdexcept>

namespace mfqat::runtime {

std::uint64_t Linear::bytes() const {
  if (!is_mx) return static_cast<std::uint64_t>(rows * cols) * 4;
  return static_cast<std::uint64_t>(mx.rows) * (mx.format->packed_row_bytes(mx.cols) + mx.format->blocks_per_row(mx.cols));
}

void Linear::forward(const float* x, std::int64_t n, float* y, const KernelOptions& k) const {
  if (is_mx) {
    if (n == 1 && k.int8_acts && q8_supported(*mx.format)) {
      gemv_q8(mx, x, y, k);
    } else if (n == 1) {
      gemv(mx, x, y, k);
    } else if (gemm_q8_active(*mx.format, k)) {
      gemm_q8(mx, panels.get(), x, n, y, k);
    } else if (gemm_bf16_active(*mx.format, k)) {
      gemm_bf16(mx, x, n, y, k);
    } else {
      gemm(mx, x, n, y, k);
    }
  } else if (n == 1) {
    gemv_f32(f32, rows, cols, x, y);
  } else {
    gemm_f32(f32, rows, cols, x, n, y);
  }
}

void Linear::forward_shared(std::initializer_list<std::pair<const Linear*, float*>> ls, const float* x, std::int64_t n, const KernelOptions& k,
                            bool shared) {
  // gemv_shared / gemm_q8_shared take matrices of one format (name and block size) and one
  // width, prepare x once for all of them and run one parallel region; other sets run one
  // forward each
  if (ls.size() == 0) return;
  const Linear& l0 = *ls.begin()->first;
  bool same = shared && ls.size() > 1 && l0.is_mx;
  for (const auto& [l, y] : ls) {
    same = same && l->is_mx && l->mx.cols == l0.mx.cols && l->mx.format->name == l0.mx.format->name &&
           l->mx.format->block_size == l0.mx.format->block_size;
  }
  const bool q8 = same && n > 1 && gemm_q8_active(*l0.mx.format, k);  // prefill's Q, K, V; W1, W3
  const bool fused = same && n == 1 && !k.int8_acts;                   // decode's
  if (!q8 && !fused) {
    for (const auto& [l, y] : ls) l->forward(x, n, y, k);
    return;
  }
  MxView ws[4];
  const Q8Panels* ps[4];
  float* ys[4];
  std::size_t m = 0;
  for (const auto& [l, y] : ls) {
    if (m == 4) throw std::invalid_argument("forward_shared: at most 4 linears");
    ws[m] = l->mx;
    ps[m] = l->panels.get();
    ys[m++] = y;
  }
  if (q8) {
    gemm_q8_shared({ws, m}, {ps, m}, x, n, {ys, m}, k);
  } else {
    gemv_shared({ws, m}, x, {ys, m}, k);
  }
}

}  // namespace mfqat::runtime
