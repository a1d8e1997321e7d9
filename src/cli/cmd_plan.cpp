// `mfqat plan`: a bits budget turned into one format per linear (issue 22, docs/budget.md).
// Measures each linear's sensitivity on calibration text (or reads it from --sensitivity),
// solves the budget (exact DP or greedy), writes plan.json; --pareto also scores the uniform
// formats and the plans at several budgets on held-out text.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "plan_flags.h"
#include "mfqat/ckpt/file.h"
#include "mfqat/hf/tokenizer.h"
#include "mfqat/plan/plan.h"
#include "mfqat/runtime/engine.h"
#include "mfqat/mx/parallel.h"
#if MFQAT_HAVE_TRAIN
#include "mfqat/train/api.h"
#endif
#include "util.h"

namespace mfqat::cli {

namespace {
std::vector<std::uint8_t> text_of(const std::string& file, const std::string& data_dir, const std::string& split_name) {
  const std::string path = file.empty() ? data_dir + "/austen/" + split_name + ".txt" : file;
  if (!std::filesystem::exists(path)) throw std::runtime_error(path + ": no such text (run `mfqat data prepare` or pass a file)");
  return ckpt::read_file(path);
}
// Calibration or held-out text as the model reads it: bytes for mfqat's byte LM, else the
// tokenizer's ids (at most `windows` windows of `seq` tokens of them; 0: all).
struct Data {
  std::vector<std::uint8_t> bytes;
  std::vector<int> ids;
  bool tokens = false;
};
Data data_of(const runtime::Engine& e, std::vector<std::uint8_t> text, std::int64_t seq, std::int64_t windows, const std::string& what) {
  Data d;
  if (!e.tokenizer()) {
    d.bytes = std::move(text);
    return d;
  }
  d.tokens = true;
  try {
    for (const std::int32_t id : e.tokenizer()->encode(std::string_view(reinterpret_cast<const char*>(text.data()), text.size()))) d.ids.push_back(id);
  } catch (const hf::TokenizerError& ex) {
    throw std::invalid_argument(what + ": " + ex.what());
  }
  if (windows > 0 && static_cast<std::int64_t>(d.ids.size()) > windows * seq + 1) d.ids.resize(static_cast<std::size_t>(windows * seq + 1));
  if (d.ids.size() < 2) throw std::invalid_argument(what + ": fewer than two tokens");
  return d;
}
double loss_on(const runtime::Engine& e, const std::shared_ptr<const runtime::Weights>& w, const Data& d, std::int64_t seq, std::int64_t windows) {
  return d.tokens ? runtime::score_windows(e, w, d.ids, seq).nll : runtime::perplexity(e, w, d.bytes, seq, windows).loss;
}

}  // namespace

Command add_plan(CLI::App& app) {
  auto* sub = app.add_subcommand("plan", "Turn a bits budget into one MX format per linear, from one anchor (docs/budget.md)");
  struct Opts {
    std::string model, formats, budget, out, calib, eval_text, data_dir = "data", sens, solver = "dp", pareto, budgets, score = "direct";
    std::int64_t windows = 32, eval_windows = 0, seq = 0;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("model", o->model, "MX anchor or fp32 master (mfqat's byte LM, or an imported model with its tokenizer)")->required();
  sub->add_option("--formats", o->formats, "candidate formats, most precise first (it is the reference: the anchor's format)")->required();
  sub->add_option("--budget", o->budget, "average bits per weight (4.5) or bytes of the quantized weights (3.2GB, 800MB)");
  sub->add_option("-o,--output", o->out, "plan file to write (JSON)");
  sub->add_option("--calib", o->calib, "calibration text (default: the validation split of --data-dir)");
  sub->add_option("--data-dir", o->data_dir, "prepared data (default data)");
  sub->add_option("--windows", o->windows, "calibration windows of max_seq tokens")->check(CLI::PositiveNumber);
  sub->add_option("--seq", o->seq, "window length (default: the model's max_seq)")->check(CLI::PositiveNumber);
  sub->add_option("--sensitivity", o->sens, "sensitivity cache: read it when it exists, else measure and write it");
  sub->add_option("--score", o->score,
                  "direct: the loss increase with one linear changed (a forward per linear and format); fisher: the first-order "
                  "estimate from squared gradients (one backward per window)")
      ->check(CLI::IsMember({"direct", "fisher"}));
  sub->add_option("--solver", o->solver, "dp (exact multiple-choice knapsack) or greedy")->check(CLI::IsMember({"dp", "greedy"}));
  sub->add_option("--pareto", o->pareto, "also write JSON lines: every uniform format and the dp and greedy plans at --budgets, scored on held-out text");
  sub->add_option("--budgets", o->budgets, "budgets for --pareto, bits per weight (comma-separated)");
  sub->add_option("--eval-text", o->eval_text, "held-out text for --pareto (default: the test split)");
  sub->add_option("--eval-windows", o->eval_windows, "windows of the held-out text (default 0: all of it)")->check(CLI::NonNegativeNumber);
  return {sub, [o]() {
    if (o->out.empty() != o->budget.empty()) throw std::invalid_argument("plan: --budget and -o go together (or --pareto alone)");
    if (o->out.empty() && o->pareto.empty()) throw std::invalid_argument("plan: nothing to do (give --budget B -o plan.json, or --pareto FILE --budgets LIST)");
    if (!o->pareto.empty() && o->budgets.empty()) throw std::invalid_argument("--pareto needs --budgets");
    auto e = runtime::Engine::open(o->model);
    const std::vector<std::string> formats = split_list(o->formats);
    if (formats.size() < 2) throw std::invalid_argument("--formats: at least two formats (the reference first)");
    const std::int64_t seq = o->seq > 0 ? o->seq : e->config().max_seq;
    const auto linears = e->linears();
    std::int64_t weights = 0;
    for (const auto& l : linears) weights += l.second;
    // parse every budget before the measurement (a typo fails in a second)
    const double budget = o->budget.empty() ? 0 : plan::parse_budget(o->budget, weights);
    std::vector<double> budgets;
    for (const auto& b : split_list(o->budgets)) budgets.push_back(plan::parse_budget(b, weights));
    double top = 0, bottom = 1e9;  // every linear at the reference, every linear at the least precise format
    for (const auto& f : formats) bottom = std::min(bottom, e->bits_per_weight(f));
    top = e->bits_per_weight(formats[0]);
    for (const double b : o->budget.empty() ? budgets : std::vector<double>{budget}) {
      if (b > top + 1e-9) throw std::invalid_argument(fmt::format("budget {} bits/weight is above the reference {} ({} bits/weight): nothing to choose", b, formats[0], top));
      if (b < bottom - 1e-9) throw std::invalid_argument(fmt::format("budget {} bits/weight is below the least precise plan ({} bits/weight)", b, bottom));
    }

    plan::Sensitivity s;
    if (!o->sens.empty() && std::filesystem::exists(o->sens)) {
      s = plan::read_sensitivity(o->sens);
      plan::check_model(s, linears, o->sens);
      fmt::print("sensitivity: {} (reference {}, measured in {:.1f} s)\n", o->sens, s.reference, s.seconds);
      if (s.score != o->score) throw std::invalid_argument(o->sens + ": a " + s.score + " sensitivity, not " + o->score + " (--score)");
    } else if (o->score == "fisher") {
#if MFQAT_HAVE_TRAIN
      const Data calib = data_of(*e, text_of(o->calib, o->data_dir, "valid"), seq, o->windows, "--calib");
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<std::string> names;
      for (const auto& l : linears) names.push_back(l.first);
      const std::vector<std::int32_t> toks = calib.tokens ? std::vector<std::int32_t>(calib.ids.begin(), calib.ids.end())
                                                          : std::vector<std::int32_t>(calib.bytes.begin(), calib.bytes.end());
      const auto g = train::squared_gradients(o->model, e->canonical_format(formats[0]), names, toks, seq, o->windows, num_threads());
      s = plan::fisher(*e, formats, g.mean_sq, g.seq, g.windows, g.loss);
      s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      fmt::print("sensitivity (fisher): {} linears x {} formats from squared gradients on {} windows of {} tokens in {:.1f} s (reference {}: loss {:.5f})\n",
                 s.layers.size(), formats.size(), g.windows, g.seq, s.seconds, s.reference, s.reference_loss);
      if (!o->sens.empty()) plan::write_sensitivity(o->sens, s);
#else
      throw std::invalid_argument("--score fisher needs the trainer (this build has MFQAT_BUILD_TRAIN off)");
#endif
    } else {
      const Data calib = data_of(*e, text_of(o->calib, o->data_dir, "valid"), seq, o->windows, "--calib");
      const plan::LossFn loss = [&](const std::shared_ptr<const runtime::Weights>& w) { return loss_on(*e, w, calib, seq, o->windows); };
      s = plan::measure(*e, formats, loss, seq, o->windows, [](std::size_t d, std::size_t t) {
        if (d == t || d % 16 == 0) fmt::print(stderr, "\rsensitivity {}/{}", d, t);
        if (d == t) fmt::print(stderr, "\n");
      });
      fmt::print("sensitivity: {} linears x {} formats on {} windows of {} tokens in {:.1f} s (reference {}: loss {:.5f})\n", s.layers.size(),
                 formats.size(), o->windows, seq, s.seconds, s.reference, s.reference_loss);
      if (!o->sens.empty()) plan::write_sensitivity(o->sens, s);
    }
    s.layers = plan::monotone(s.layers);  // the file keeps the measured costs; the solvers see these
    auto solve = [&](double b, const std::string& solver) {
      return plan::solve_budget(s.layers, b, solver);
    };
    if (!o->out.empty()) {
      const auto t0 = std::chrono::steady_clock::now();
      const auto sol = solve(budget, o->solver);
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      const auto p = plan::make_plan(s, sol, budget, o->solver);
      plan::write_plan(o->out, p);
      fmt::print("{}: {:.3f} bits/weight (budget {:.3f}), predicted loss +{:.5f} nats/token, solved in {:.1f} ms ({})\n", o->out, sol.bits, budget,
                 sol.cost, ms, mix_of(p.formats));
    }
    if (!o->pareto.empty()) {
      const Data text = data_of(*e, text_of(o->eval_text, o->data_dir, "test"), seq, o->eval_windows, "--eval-text");
      std::string lines;
      auto row = [&](const std::string& kind, double b, double bits, double predicted, const std::shared_ptr<const runtime::Weights>& w,
                     const std::map<std::string, std::string>& plan_formats) {
        const double loss = loss_on(*e, w, text, seq, o->eval_windows);
        nlohmann::json j = {{"kind", kind}, {"budget_bits", b}, {"bits_per_weight", bits}, {"predicted_loss_increase", predicted},
                            {"loss", loss},   {"bits_per_token", loss / std::log(2.0)}};
        if (!plan_formats.empty()) j["formats"] = plan_formats;  // so that any other score can predict this plan too
        fmt::print("  {:<10} budget {:>5.2f}  bits/w {:>6.3f}  predicted +{:.5f}  held-out loss {:.5f} ({:.4f} bits/token)\n", kind, b, bits,
                   predicted, loss, loss / std::log(2.0));
        std::fflush(stdout);
        lines += j.dump() + "\n";
      };
      for (std::size_t f = 0; f < formats.size(); ++f) {
        double pred = 0;
        for (const auto& l : s.layers) pred += l.options[f].cost;
        const auto w = e->weights(s.layers[0].options[f].format);
        row("uniform:" + s.layers[0].options[f].format, w->bits_per_weight, w->bits_per_weight, pred, w, {});
      }
      for (const double b : budgets) {
        for (const char* solver : {"dp", "greedy"}) {
          const auto sol = solve(b, solver);
          const auto p = plan::make_plan(s, sol, b, solver);
          row(solver, b, sol.bits, sol.cost, e->weights_mixed(p.formats, s.reference, std::string(solver) + "@" + std::to_string(b)), p.formats);
        }
      }
      ckpt::write_file_atomic(o->pareto, lines.data(), lines.size());
    }
    return 0;
  }};
}

}  // namespace mfqat::cli
