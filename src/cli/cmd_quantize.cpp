#include <fmt/core.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "commands.h"
#include "mfqat/ckpt/npy.h"
#include "mfqat/mx/quantize.h"
#include "mfqat/mx/stats.h"

namespace mfqat::cli {
namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

void parse_shape(const std::string& s, std::int64_t* r, std::int64_t* c) {
  const auto comma = s.find(',');
  try {
    if (comma == std::string::npos) throw std::invalid_argument("");
    std::size_t used = 0;
    *r = std::stoll(s.substr(0, comma), &used);
    if (used != comma) throw std::invalid_argument("");
    const std::string tail = s.substr(comma + 1);
    *c = std::stoll(tail, &used);
    if (used != tail.size()) throw std::invalid_argument("");
  } catch (const std::exception&) {
    throw std::invalid_argument("bad --shape '" + s + "' (expected ROWS,COLS)");
  }
  if (*r <= 0 || *c <= 0) throw std::invalid_argument("bad --shape '" + s + "' (dimensions must be positive)");
}

}  // namespace

Command add_quantize(CLI::App& app) {
  auto* sub = app.add_subcommand("quantize", "Fake-quantize a 2-D float32 matrix (blocks along the last axis)");
  struct Opts {
    std::string format, input, output, shape, rounding = "even";
    int block_size = mx::kDefaultBlockSize;
    std::uint64_t seed = 0;
    bool stats = false, json = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("-f,--format", o->format, "MX format (see `mfqat formats`)")->required();
  sub->add_option("-i,--input", o->input, "input: .npy (float32, C order), or raw float32 with --shape")->required();
  sub->add_option("-o,--output", o->output, "output: .npy when the name ends in .npy, else raw float32")->required();
  sub->add_option("--shape", o->shape, "ROWS,COLS: read the input as raw little-endian float32");
  sub->add_option("--rounding", o->rounding, "element rounding: even (default), away, stochastic");
  sub->add_option("--seed", o->seed, "seed for stochastic rounding");
  sub->add_option("--block-size", o->block_size, "elements per shared scale (default 32)");
  sub->add_flag("--stats", o->stats, "print MSE, SQNR, max abs error and saturated fraction");
  sub->add_flag("--json", o->json, "print the stats as JSON");
  return {sub, [o]() {
    const mx::Format f = mx::find_format(o->format, o->block_size);
    mx::QuantOptions q;
    q.rounding = mx::parse_rounding(o->rounding);
    q.seed = o->seed;
    ckpt::Matrix in;
    if (!o->shape.empty()) {
      std::int64_t r, c;
      parse_shape(o->shape, &r, &c);
      in = ckpt::read_raw_f32(o->input, r, c);
    } else {
      if (!ends_with(o->input, ".npy")) {
        throw std::invalid_argument(o->input + ": not a .npy file; give --shape ROWS,COLS for raw float32 input");
      }
      in = ckpt::read_npy(o->input);
    }
    ckpt::Matrix out;
    out.rows = in.rows;
    out.cols = in.cols;
    out.data.resize(in.data.size());
    std::vector<std::uint8_t> sat(in.data.size());
    mx::fake_quantize(f, in.data.data(), in.rows, in.cols, out.data.data(), q, sat.data());
    if (ends_with(o->output, ".npy")) {
      ckpt::write_npy(o->output, out);
    } else {
      ckpt::write_raw_f32(o->output, out);
    }
    if (o->stats || o->json) {
      const mx::ErrorStats s = mx::error_stats(in.data.data(), out.data.data(), static_cast<std::int64_t>(in.data.size()), sat.data());
      if (o->json) {
        nlohmann::json j = {{"format", f.name},       {"rows", in.rows},
                            {"cols", in.cols},        {"rounding", mx::rounding_name(q.rounding)},
                            {"mse", s.mse},           {"sqnr_db", std::isfinite(s.sqnr_db) ? nlohmann::json(s.sqnr_db) : nlohmann::json("inf")},
                            {"max_abs_err", s.max_abs_err}, {"saturated_fraction", s.saturated_fraction},
                            {"nonfinite", s.nonfinite}};
        fmt::print("{}\n", j.dump());
      } else {
        fmt::print("{} [{}x{}] {}: mse {:.6g}  sqnr {:.2f} dB  max|err| {:.6g}  saturated {:.4f}%  nonfinite {}\n",
                   f.name, in.rows, in.cols, mx::rounding_name(q.rounding), s.mse, s.sqnr_db, s.max_abs_err,
                   100.0 * s.saturated_fraction, s.nonfinite);
      }
    }
    return 0;
  }};
}

}  // namespace mfqat::cli
