// Drivers: split a matrix into byte-aligned runs of blocks, pick the kernel path, spread runs
// over threads.
#include "mfqat/mx/quantize.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>

#include "kernels.h"
#include "mfqat/mx/parallel.h"

namespace mfqat::mx {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Auto: return "auto";
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
  }
  return "?";
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::Auto:
    case Isa::Scalar: return true;
    case Isa::Avx2:
#if defined(__x86_64__) || defined(__i386__)
      return detail::avx2_kernels() != nullptr && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
  }
  return false;
}

Isa default_isa() {
  static const Isa isa = [] {
    if (const char* s = std::getenv("MFQAT_ISA")) {
      const std::string v(s);
      if (v == "scalar") return Isa::Scalar;
      if (v == "avx2" && isa_supported(Isa::Avx2)) return Isa::Avx2;
    }
    return isa_supported(Isa::Avx2) ? Isa::Avx2 : Isa::Scalar;
  }();
  return isa;
}

namespace detail {

const KernelTable& kernels_for(Isa isa) {
  if (isa == Isa::Auto) isa = default_isa();
  if (!isa_supported(isa)) throw std::runtime_error(std::string("instruction set ") + isa_name(isa) + " is not available on this CPU");
  if (isa == Isa::Avx2) return *avx2_kernels();
  return scalar_kernels();
}

#if !MFQAT_HAVE_AVX2
const KernelTable* avx2_kernels() { return nullptr; }
#endif

}  // namespace detail

namespace {

void check_shape(const Format& f, std::int64_t rows, std::int64_t cols) {
  if (rows < 0 || cols < 0) throw std::invalid_argument("negative shape");
  if (f.block_size < 1 || f.block_size > kMaxBlockSize) throw std::invalid_argument("block size out of range");
}

}  // namespace

namespace detail {

void for_each_run(int block_size, int bits_a, int bits_b, std::int64_t rows, std::int64_t cols, const RunFn& fn) {
  constexpr std::int64_t kMinElemsPerThread = 1 << 16;
  const std::int64_t bs = block_size;
  const std::int64_t bpr = (cols + bs - 1) / bs;
  if (rows <= 0 || bpr == 0) return;
  // A run of g blocks ends on a byte boundary of a stream of b-bit codes when g*bs*b = 0 mod 8.
  const auto gran = [&](int b) { return 8 / std::gcd<std::int64_t>(bs * b, 8); };
  const std::int64_t g = std::max<std::int64_t>(1, std::lcm(gran(bits_a), gran(bits_b)));  // >= 1 (said for the analyzer)
  const std::int64_t want = (kMinElemsPerThread + bs - 1) / bs;
  const std::int64_t chunk = std::min(bpr, (want + g - 1) / g * g);
  const std::int64_t chunks = (bpr + chunk - 1) / chunk;
  const std::int64_t per_item = chunk * bs;
  const std::int64_t grain = per_item >= kMinElemsPerThread ? 1 : (kMinElemsPerThread + per_item - 1) / per_item;
  parallel_for(rows * chunks, grain, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t it = b; it < e; ++it) {
      const std::int64_t row = it / chunks, blk = (it % chunks) * chunk, col = blk * bs;
      fn(row, blk, col, std::min(cols, col + chunk * bs) - col);
    }
  });
}

}  // namespace detail

void fake_quantize(const Format& f, const float* x, std::int64_t rows, std::int64_t cols, float* out,
                   const QuantOptions& opt, std::uint8_t* saturated, Isa isa) {
  check_shape(f, rows, cols);
  const detail::KernelTable& k = detail::kernels_for(isa);
  const detail::KernelParams p = detail::make_params(f);
  detail::for_each_run(f.block_size, f.bits, f.bits, rows, cols, [&](std::int64_t row, std::int64_t, std::int64_t col, std::int64_t n) {
    const std::int64_t off = row * cols + col;
    const detail::RoundCtx rc{opt.rounding, opt.seed, static_cast<std::uint64_t>(off)};
    k.fake_quantize(p, x + off, out + off, n, saturated ? saturated + off : nullptr, rc);
  });
}

void quantize(const Format& f, const float* x, std::int64_t rows, std::int64_t cols, std::uint8_t* elements,
              std::uint8_t* scales, const QuantOptions& opt, Isa isa) {
  check_shape(f, rows, cols);
  const detail::KernelTable& k = detail::kernels_for(isa);
  const detail::KernelParams p = detail::make_params(f);
  const std::int64_t row_bytes = static_cast<std::int64_t>(f.packed_row_bytes(cols)), bpr = f.blocks_per_row(cols);
  detail::for_each_run(f.block_size, f.bits, f.bits, rows, cols, [&](std::int64_t row, std::int64_t blk, std::int64_t col, std::int64_t n) {
    const std::int64_t off = row * cols + col;
    const detail::RoundCtx rc{opt.rounding, opt.seed, static_cast<std::uint64_t>(off)};
    k.quantize(p, x + off, n, elements + row * row_bytes + col * f.bits / 8, scales + row * bpr + blk, rc);
  });
}

PackedMatrix quantize(const Format& f, const float* x, std::int64_t rows, std::int64_t cols, const QuantOptions& opt,
                      Isa isa) {
  PackedMatrix m;
  m.format = f;
  m.rows = rows;
  m.cols = cols;
  m.elements.resize(static_cast<std::size_t>(rows) * f.packed_row_bytes(cols));
  m.scales.resize(static_cast<std::size_t>(rows * f.blocks_per_row(cols)));
  quantize(f, x, rows, cols, m.elements.data(), m.scales.data(), opt, isa);
  return m;
}

void dequantize(const Format& f, const std::uint8_t* elements, const std::uint8_t* scales, std::int64_t rows,
                std::int64_t cols, float* out, Isa isa) {
  check_shape(f, rows, cols);
  const detail::KernelTable& k = detail::kernels_for(isa);
  const detail::KernelParams p = detail::make_params(f);
  const std::int64_t row_bytes = static_cast<std::int64_t>(f.packed_row_bytes(cols)), bpr = f.blocks_per_row(cols);
  detail::for_each_run(f.block_size, f.bits, f.bits, rows, cols, [&](std::int64_t row, std::int64_t blk, std::int64_t col, std::int64_t n) {
    k.dequantize(p, elements + row * row_bytes + col * f.bits / 8, scales + row * bpr + blk, n, out + row * cols + col);
  });
}

std::vector<float> dequantize(const PackedMatrix& m, Isa isa) {
  std::vector<float> out(static_cast<std::size_t>(m.rows * m.cols));
  dequantize(m.format, m.elements.data(), m.scales.data(), m.rows, m.cols, out.data(), isa);
  return out;
}

}  // namespace mfqat::mx
