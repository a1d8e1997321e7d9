#include <fmt/core.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>

#include "commands.h"
#include "util.h"
#include "mfqat/ckpt/npy.h"
#include "mfqat/ckpt/safetensors.h"
#include "mfqat/mx/quantize.h"
#include "mfqat/mx/stats.h"

namespace mfqat::cli {
namespace {

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

struct Opts {
  std::string format, input, output, shape, rounding = "even", name = "weight", tensors;
  int block_size = mx::kDefaultBlockSize;
  std::uint64_t seed = 0;
  bool stats = false, json = false, packed = false;
};

void print_stats(const Opts& o, const std::string& tensor, const mx::Format& f, mx::Rounding r, std::int64_t rows,
                 std::int64_t cols, const float* x, const float* y, const std::uint8_t* sat) {
  const mx::ErrorStats s = mx::error_stats(x, y, rows * cols, sat);
  if (o.json) {
    nlohmann::json j = {{"tensor", tensor},
                        {"format", f.name},
                        {"rows", rows},
                        {"cols", cols},
                        {"rounding", mx::rounding_name(r)},
                        {"mse", s.mse},
                        {"sqnr_db", std::isfinite(s.sqnr_db) ? nlohmann::json(s.sqnr_db) : nlohmann::json("inf")},
                        {"max_abs_err", s.max_abs_err},
                        {"saturated_fraction", s.saturated_fraction},
                        {"nonfinite", s.nonfinite}};
    fmt::print("{}\n", j.dump());
  } else {
    fmt::print("{} {} [{}x{}] {}: mse {:.6g}  sqnr {:.2f} dB  max|err| {:.6g}  saturated {:.4f}%  nonfinite {}\n",
               tensor, f.name, rows, cols, mx::rounding_name(r), s.mse, s.sqnr_db, s.max_abs_err,
               100.0 * s.saturated_fraction, s.nonfinite);
  }
}

ckpt::Matrix read_matrix(const Opts& o) {
  if (!o.shape.empty()) {
    std::int64_t r, c;
    parse_shape(o.shape, &r, &c);
    return ckpt::read_raw_f32(o.input, r, c);
  }
  if (!is_npy(o.input)) {
    throw std::invalid_argument(o.input + ": not a .npy file; give --shape ROWS,COLS for raw float32 input");
  }
  return ckpt::read_npy(o.input);
}

// --packed: write a real MX checkpoint (safetensors).
int quantize_packed(const Opts& o, const mx::Format& f, const mx::QuantOptions& q) {
  if (!is_safetensors(o.output)) throw std::invalid_argument(o.output + ": --packed writes .safetensors files");
  ckpt::SafetensorsWriter w;
  auto quantize_one = [&](const std::string& name, const float* x, std::int64_t rows, std::int64_t cols) {
    w.add_mx(name, mx::quantize(f, x, rows, cols, q), q.rounding);
    if (o.stats || o.json) {  // fake-quant is bit-identical to dequantize(quantize(x))
      std::vector<float> y(static_cast<std::size_t>(rows * cols));
      std::vector<std::uint8_t> sat(y.size());
      mx::fake_quantize(f, x, rows, cols, y.data(), q, sat.data());
      print_stats(o, name, f, q.rounding, rows, cols, x, y.data(), sat.data());
    }
  };
  if (!is_safetensors(o.input)) {
    const ckpt::Matrix m = read_matrix(o);
    quantize_one(o.name, m.data.data(), m.rows, m.cols);
  } else {
    const auto in = ckpt::SafetensorsFile::open(o.input);
    std::regex re;
    try {
      re = std::regex(o.tensors.empty() ? std::string(".*") : o.tensors);
    } catch (const std::regex_error& e) {
      throw std::invalid_argument("bad --tensors regex '" + o.tensors + "': " + e.what());
    }
    int picked = 0;
    for (const auto& [k, v] : in.metadata()) w.set_metadata(k, v);
    for (const auto& t : in.tensors()) {
      const bool pick = !in.is_mx_part(t) && t.dtype == ckpt::DType::F32 && std::regex_search(t.name, re) &&
                        (t.shape.size() == 2 || (!o.tensors.empty() && t.shape.size() == 1));
      if (!pick) {
        w.add(t.name, t.dtype, t.shape, in.data(t));
        continue;
      }
      const std::int64_t rows = t.shape.size() == 2 ? t.shape[0] : 1, cols = t.shape.back();
      const std::vector<float> x = in.load_f32(t);
      quantize_one(t.name, x.data(), rows, cols);
      ++picked;
    }
    if (picked == 0) {
      throw std::invalid_argument(o.input + ": no 2-D F32 tensor matches --tensors '" + o.tensors + "'");
    }
  }
  w.write(o.output);
  return 0;
}

}  // namespace

Command add_quantize(CLI::App& app) {
  auto* sub = app.add_subcommand("quantize", "Fake-quantize a 2-D float32 matrix (blocks along the last axis)");
  auto o = std::make_shared<Opts>();
  sub->add_option("-f,--format", o->format, "MX format (see `mfqat formats`)")->required();
  sub->add_option("-i,--input", o->input, "input: .npy (float32, C order), raw float32 with --shape, or .safetensors with --packed")->required();
  sub->add_option("-o,--output", o->output, "output: .npy when the name ends in .npy, .safetensors with --packed, else raw float32")->required();
  sub->add_option("--shape", o->shape, "ROWS,COLS: read the input as raw little-endian float32");
  sub->add_option("--rounding", o->rounding, "element rounding: even (default), away, stochastic");
  sub->add_option("--seed", o->seed, "seed for stochastic rounding");
  sub->add_option("--block-size", o->block_size, "elements per shared scale (default 32)");
  sub->add_flag("--stats", o->stats, "print MSE, SQNR, max abs error and saturated fraction");
  sub->add_flag("--json", o->json, "print the stats as JSON");
  sub->add_flag("--packed", o->packed, "write a real MX checkpoint (.safetensors: packed elements + E8M0 scales)");
  sub->add_option("--name", o->name, "--packed from .npy/raw: the tensor's name (default 'weight')");
  sub->add_option("--tensors", o->tensors,
                  "--packed from .safetensors: regex of the F32 tensors to quantize (default: every 2-D F32 tensor)");
  return {sub, [o]() {
    const mx::Format f = mx::find_format(o->format, o->block_size);
    mx::QuantOptions q;
    q.rounding = mx::parse_rounding(o->rounding);
    q.seed = o->seed;
    if (o->packed) return quantize_packed(*o, f, q);
    if (is_safetensors(o->input)) throw std::invalid_argument(o->input + ": safetensors input needs --packed");
    const ckpt::Matrix in = read_matrix(*o);
    ckpt::Matrix out;
    out.rows = in.rows;
    out.cols = in.cols;
    out.data.resize(in.data.size());
    std::vector<std::uint8_t> sat(in.data.size());
    mx::fake_quantize(f, in.data.data(), in.rows, in.cols, out.data.data(), q, sat.data());
    if (is_npy(o->output)) {
      ckpt::write_npy(o->output, out);
    } else {
      ckpt::write_raw_f32(o->output, out);
    }
    if (o->stats || o->json) print_stats(*o, "input", f, q.rounding, in.rows, in.cols, in.data.data(), out.data.data(), sat.data());
    return 0;
  }};
}

}  // namespace mfqat::cli
