// Drivers: split a matrix into byte-aligned runs of blocks, pick the kernel path, spread runs
// over threads.
#include "mfqat/mx/quantize.h"

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

constexpr std::int64_t kMinElemsPerThread = 1 << 16;

// A matrix cut into runs: `chunks` runs per row, each `chunk_blocks` blocks (the last shorter).
struct RunPlan {
  std::int64_t rows, cols, bpr, chunk_blocks, chunks;
  int bs;
  RunPlan(const Format& f, std::int64_t r, std::int64_t c) : rows(r), cols(c), bs(f.block_size) {
    bpr = f.blocks_per_row(c);
    // Runs must start on a byte of the packed row: chunk_blocks * bs * bits = 0 mod 8.
    const std::int64_t g = 8 / std::gcd<std::int64_t>(static_cast<std::int64_t>(bs) * f.bits, 8);
    std::int64_t want = (kMinElemsPerThread + bs - 1) / bs;
    chunk_blocks = ((want + g - 1) / g) * g;
    if (chunk_blocks > bpr) chunk_blocks = bpr;
    chunks = bpr == 0 ? 0 : (bpr + chunk_blocks - 1) / chunk_blocks;
  }
  std::int64_t items() const { return rows * chunks; }
  std::int64_t grain() const {
    const std::int64_t per_item = chunk_blocks * bs;
    return per_item >= kMinElemsPerThread ? 1 : (kMinElemsPerThread + per_item - 1) / std::max<std::int64_t>(per_item, 1);
  }
  // Run of item `it`: row, first block in row, first column, element count.
  void run(std::int64_t it, std::int64_t* row, std::int64_t* blk, std::int64_t* col, std::int64_t* n) const {
    *row = it / chunks;
    *blk = (it % chunks) * chunk_blocks;
    *col = *blk * bs;
    const std::int64_t end = std::min(cols, *col + chunk_blocks * bs);
    *n = end - *col;
  }
};

void check_shape(const Format& f, std::int64_t rows, std::int64_t cols) {
  if (rows < 0 || cols < 0) throw std::invalid_argument("negative shape");
  if (f.block_size < 1 || f.block_size > kMaxBlockSize) throw std::invalid_argument("block size out of range");
}

}  // namespace

void fake_quantize(const Format& f, const float* x, std::int64_t rows, std::int64_t cols, float* out,
                   const QuantOptions& opt, std::uint8_t* saturated, Isa isa) {
  check_shape(f, rows, cols);
  const detail::KernelTable& k = detail::kernels_for(isa);
  const detail::KernelParams p = detail::make_params(f);
  const RunPlan plan(f, rows, cols);
  parallel_for(plan.items(), plan.grain(), [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t it = b; it < e; ++it) {
      std::int64_t row, blk, col, n;
      plan.run(it, &row, &blk, &col, &n);
      const std::int64_t off = row * cols + col;
      detail::RoundCtx rc{opt.rounding, opt.seed, static_cast<std::uint64_t>(off)};
      k.fake_quantize(p, x + off, out + off, n, saturated ? saturated + off : nullptr, rc);
    }
  });
}

void quantize(const Format& f, const float* x, std::int64_t rows, std::int64_t cols, std::uint8_t* elements,
              std::uint8_t* scales, const QuantOptions& opt, Isa isa) {
  check_shape(f, rows, cols);
  const detail::KernelTable& k = detail::kernels_for(isa);
  const detail::KernelParams p = detail::make_params(f);
  const RunPlan plan(f, rows, cols);
  const std::int64_t row_bytes = static_cast<std::int64_t>(f.packed_row_bytes(cols));
  parallel_for(plan.items(), plan.grain(), [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t it = b; it < e; ++it) {
      std::int64_t row, blk, col, n;
      plan.run(it, &row, &blk, &col, &n);
      const std::int64_t off = row * cols + col;
      detail::RoundCtx rc{opt.rounding, opt.seed, static_cast<std::uint64_t>(off)};
      k.quantize(p, x + off, n, elements + row * row_bytes + col * f.bits / 8, scales + row * plan.bpr + blk, rc);
    }
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
  const RunPlan plan(f, rows, cols);
  const std::int64_t row_bytes = static_cast<std::int64_t>(f.packed_row_bytes(cols));
  parallel_for(plan.items(), plan.grain(), [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t it = b; it < e; ++it) {
      std::int64_t row, blk, col, n;
      plan.run(it, &row, &blk, &col, &n);
      k.dequantize(p, elements + row * row_bytes + col * f.bits / 8, scales + row * plan.bpr + blk, n,
                   out + row * cols + col);
    }
  });
}

std::vector<float> dequantize(const PackedMatrix& m, Isa isa) {
  std::vector<float> out(static_cast<std::size_t>(m.rows * m.cols));
  dequantize(m.format, m.elements.data(), m.scales.data(), m.rows, m.cols, out.data(), isa);
  return out;
}

}  // namespace mfqat::mx
