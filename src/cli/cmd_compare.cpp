#include <fmt/core.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "commands.h"
#include "mfqat/ckpt/npy.h"
#include "mfqat/mx/quantize.h"
#include "mfqat/mx/stats.h"

namespace mfqat::cli {

Command add_compare(CLI::App& app) {
  auto* sub = app.add_subcommand("compare", "Quantization error of one matrix in many formats, side by side");
  struct Opts {
    std::string input, formats = "all", rounding = "even", write_input;
    std::int64_t rows = 256, cols = 1024;
    int block_size = mx::kDefaultBlockSize;
    std::uint64_t seed = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("-i,--input", o->input, ".npy float32 matrix (default: a synthetic weight-like matrix)");
  sub->add_option("--formats", o->formats, "comma-separated formats, or int / fp / all (default all)");
  sub->add_option("--rows", o->rows, "synthetic matrix rows (default 256)")->check(CLI::Range(1, 1 << 20));
  sub->add_option("--cols", o->cols, "synthetic matrix columns (default 1024)")->check(CLI::Range(1, 1 << 24));
  sub->add_option("--seed", o->seed, "seed of the synthetic matrix and of stochastic rounding");
  sub->add_option("--rounding", o->rounding, "even (default), away, stochastic");
  sub->add_option("--block-size", o->block_size, "elements per shared scale (default 32)");
  sub->add_option("--write-input", o->write_input, "also save the matrix used as .npy");
  sub->add_flag("--json", o->json, "machine-readable output");
  return {sub, [o]() {
    const auto formats = mx::parse_format_list(o->formats, o->block_size);
    const mx::Rounding rounding = mx::parse_rounding(o->rounding);
    ckpt::Matrix m;
    if (!o->input.empty()) {
      m = ckpt::read_npy(o->input);
    } else {
      m.rows = o->rows;
      m.cols = o->cols;
      m.data = mx::synthetic_weights(m.rows, m.cols, o->seed);
    }
    if (!o->write_input.empty()) ckpt::write_npy(o->write_input, m);
    std::vector<float> y(m.data.size());
    std::vector<std::uint8_t> sat(m.data.size());
    nlohmann::json rows = nlohmann::json::array();
    if (!o->json) {
      fmt::print("{}x{} matrix, rounding {}, block {}\n", m.rows, m.cols, mx::rounding_name(rounding), o->block_size);
      fmt::print("{:<12} {:>6} {:>12} {:>10} {:>12} {:>10}\n", "format", "bpw", "mse", "sqnr_dB", "max|err|", "sat_%");
    }
    for (const auto& f : formats) {
      mx::fake_quantize(f, m.data.data(), m.rows, m.cols, y.data(), {rounding, o->seed}, sat.data());
      const auto s = mx::error_stats(m.data.data(), y.data(), static_cast<std::int64_t>(y.size()), sat.data());
      if (o->json) {
        rows.push_back({{"format", f.name},
                        {"bits_per_weight", f.bits_per_weight()},
                        {"mse", s.mse},
                        {"sqnr_db", std::isfinite(s.sqnr_db) ? nlohmann::json(s.sqnr_db) : nlohmann::json("inf")},
                        {"max_abs_err", s.max_abs_err},
                        {"saturated_fraction", s.saturated_fraction}});
      } else {
        fmt::print("{:<12} {:>6.2f} {:>12.4e} {:>10.2f} {:>12.4e} {:>10.4f}\n", f.name, f.bits_per_weight(), s.mse,
                   s.sqnr_db, s.max_abs_err, 100.0 * s.saturated_fraction);
      }
    }
    if (o->json) fmt::print("{}\n", rows.dump(2));
    return 0;
  }};
}

}  // namespace mfqat::cli
