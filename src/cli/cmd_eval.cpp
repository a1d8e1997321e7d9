#include <fmt/core.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include "mfqat/mx/parallel.h"

#include <cmath>
#include <memory>

#include "commands.h"
#include "plan_flags.h"
#include "mfqat/ckpt/file.h"
#include "mfqat/hf/tokenizer.h"
#include "mfqat/model/checkpoint.h"
#include "mfqat/runtime/engine.h"
#include "mfqat/runtime/generate.h"
#include "mfqat/train/api.h"

namespace mfqat::cli {

namespace {

// Models with a tokenizer (Hugging Face directories, imported masters and their anchors): the
// evaluation contract of docs/models.md on the torch-free engine: the whole text encoded as the
// tokenizer does by default, consecutive windows of ctx tokens, every token after a window's
// first scored, one JSON line per format {format, tokens, nll, ppl, ...}.
int eval_tokens(const train::EvalJob& j, std::int64_t ctx, bool json, const PlanFlags& pf) {
  if (j.text.empty()) throw std::invalid_argument("--text FILE is required for a model with a tokenizer");
  auto e = runtime::Engine::open(j.model, ctx);
  if (!e->tokenizer()) throw std::invalid_argument(j.model + ": no tokenizer (mfqat's byte LM is evaluated without --ctx)");
  if (ctx == 0) ctx = e->config().max_seq;
  const auto bytes = ckpt::read_file(j.text);
  std::vector<int> ids;
  try {
    for (const std::int32_t id : e->tokenizer()->encode(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()))) ids.push_back(id);
  } catch (const hf::TokenizerError& ex) {
    throw std::invalid_argument(j.text + ": " + ex.what());
  }
  const auto plans = load_plans(*e, pf);
  std::vector<std::string> names;
  if (!j.formats.empty() || plans.empty()) {
    for (const auto& f : model::select_formats(j.formats.empty() ? "all" : j.formats, e->anchor_format(), /*allow_fp32=*/!e->anchor_format().has_value())) {
      names.push_back(f ? f->name : "fp32");
    }
  }
  for (const auto& p : plans) names.push_back(p.name);
  if (!json) fmt::print("{:<12} {:>6} {:>9} {:>10} {:>9}\n", "format", "bpw", "nll", "ppl", "tokens");
  for (const auto& name : names) {
    const auto w = e->weights(name);
    const auto t0 = std::chrono::steady_clock::now();
    const runtime::TokenScore s = runtime::score_windows(*e, w, ids, ctx);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (json) {
      fmt::print("{}\n", nlohmann::json{{"format", w->format}, {"bits_per_weight", w->bits_per_weight}, {"tokens", s.tokens}, {"nll", s.nll},
                                        {"ppl", std::exp(s.nll)}, {"ctx", ctx}, {"text_tokens", ids.size()}, {"seconds", secs}}
                             .dump());
    } else {
      fmt::print("{:<12} {:>6.2f} {:>9.4f} {:>10.3f} {:>9}\n", w->format, w->bits_per_weight, s.nll, std::exp(s.nll), s.tokens);
    }
    std::fflush(stdout);
  }
  return 0;
}

bool has_tokenizer(const std::string& model) {
  if (model::is_hf_dir(model)) return true;
  return model::Checkpoint::open(model).tokenizer_json().has_value();
}

}  // namespace

Command add_eval(CLI::App& app) {
  auto* sub = app.add_subcommand("eval", "Evaluate a master or an anchor at each format: loss, perplexity, bits/byte and next-word accuracy, or accuracy");
  auto j = std::make_shared<train::EvalJob>();
  auto json = std::make_shared<bool>(false);
  auto ctx = std::make_shared<std::int64_t>(0);
  auto pf = std::make_shared<PlanFlags>();
  sub->add_option("model", j->model, "fp32 master or MX anchor (.safetensors), or a Hugging Face model directory")->required();
  sub->add_option("--ctx", *ctx, "models with a tokenizer: window of N tokens (default: the model's context); see docs/models.md")
      ->check(CLI::PositiveNumber);
  auto* formats = sub->add_option("--formats", j->formats, "comma-separated formats, int, fp or all (default all, or none with --plan/--budget; fp32 = unquantized master)");
  sub->add_option("--from", j->from, "master: quantize the fp32 weights; anchor: Slice-and-Scale from the anchor (default: what the file is)")
      ->check(CLI::IsMember({"master", "anchor"}));
  sub->add_option("--text", j->text, "LM: evaluate this text file instead of the prepared split");
  sub->add_option("--data-dir", j->data_dir, "prepared data (default data)");
  sub->add_option("--split", j->split, "test (default) or valid")->check(CLI::IsMember({"test", "valid", "train"}));
  sub->add_option("--seq", j->seq, "LM window in bytes (default: the model's max_seq)")->check(CLI::NonNegativeNumber);
  sub->add_option("--batches", j->batches, "LM: batches of windows spread over the text (0: the whole text)")->check(CLI::NonNegativeNumber);
  sub->add_option("--batch", j->batch, "LM: windows per batch")->check(CLI::PositiveNumber);
  sub->add_flag("--json", *json, "print JSON lines, one per format");
  add_plan_flags(sub, *pf, /*many=*/true);
  return {sub, [j, json, ctx, pf, formats]() {
    const bool planned = !pf->plans.empty() || !pf->budgets.empty();
    if (planned && formats->count() == 0) j->formats.clear();  // only the plans
    if (has_tokenizer(j->model)) return eval_tokens(*j, *ctx, *json, *pf);
    if (planned) {  // checked and solved on the engine (the model's linears, the anchor's formats)
      auto e = runtime::Engine::open(j->model);
      const auto lin = e->linears();
      for (const auto& p : load_plans(*e, *pf)) {
        train::EvalJob::Plan ep{p.name, p.bits, {}};
        for (const auto& l : lin) {
          const std::string f = p.formats.count(l.first) ? p.formats.at(l.first) : e->canonical_format(p.rest);
          if (f != "fp32") ep.formats[l.first] = f;  // fp32: the weight as stored (a master's, an anchor's own)
        }
        j->plans.push_back(std::move(ep));
      }
    }
    if (*ctx > 0) throw std::invalid_argument("--ctx: " + j->model + " has no tokenizer (mfqat's byte LM: use --seq)");
    j->threads = num_threads();  // --threads / MFQAT_NUM_THREADS / all cores
    bool header = false;
    train::run_eval(*j, [&](const train::EvalRow& r) {
      if (*json) {
        nlohmann::json o = {{"format", r.format}, {"bits_per_weight", r.bits_per_weight}, {"source", r.source}, {"loss", r.loss},
                            {"units", r.units},   {"seconds", r.seconds}};
        if (r.accuracy >= 0) {
          o["accuracy"] = r.accuracy;
        } else {
          o["perplexity"] = r.perplexity;
          o["bits_per_byte"] = r.bits_per_byte;
        }
        if (r.word_accuracy >= 0) {
          o["next_word_accuracy"] = r.word_accuracy;
          o["words"] = r.words;
        }
        fmt::print("{}\n", o.dump());
      } else {
        if (!header) {
          fmt::print("{:<12} {:>6} {:>9} {:>10} {:>10} {:>10}  {}\n", "format", "bpw", "loss", r.accuracy >= 0 ? "accuracy" : "ppl",
                     r.accuracy >= 0 ? "" : "bits/byte", r.word_accuracy >= 0 ? "next word" : "", "source");
          header = true;
        }
        if (r.accuracy >= 0) {
          fmt::print("{:<12} {:>6.2f} {:>9.4f} {:>9.2f}% {:>10}  {}\n", r.format, r.bits_per_weight, r.loss, 100 * r.accuracy, "", r.source);
        } else {
          const std::string w = r.word_accuracy >= 0 ? fmt::format("{:.2f}%", 100 * r.word_accuracy) : "";
          fmt::print("{:<12} {:>6.2f} {:>9.4f} {:>10.3f} {:>10.4f} {:>10}  {}\n", r.format, r.bits_per_weight, r.loss, r.perplexity,
                     r.bits_per_byte, w, r.source);
        }
      }
      std::fflush(stdout);
    });
    return 0;
  }};
}

}  // namespace mfqat::cli
