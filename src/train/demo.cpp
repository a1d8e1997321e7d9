// The demo pipeline (demo.h): six stages, each cached with its recipe. No <torch/torch.h> here:
// training goes through run_train (api.h), serving through the runtime.
#include "mfqat/train/demo.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>

#include "mfqat/ckpt/file.h"
#include "mfqat/data/prepare.h"
#include "mfqat/model/checkpoint.h"
#include "mfqat/mx/format.h"
#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/engine.h"
#include "mfqat/train/api.h"

namespace mfqat::train {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kStages = 6;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// A stage output is reused when it exists and OUTPUT.recipe.json holds the same recipe.
bool cached(const std::string& output, const nlohmann::json& recipe, bool fresh) {
  if (fresh || !fs::exists(output) || !fs::exists(output + ".recipe.json")) return false;
  const auto b = ckpt::read_file(output + ".recipe.json");
  return nlohmann::json::parse(std::string(b.begin(), b.end()), nullptr, false) == recipe;
}
void mark_done(const std::string& output, const nlohmann::json& recipe) {
  const std::string s = recipe.dump(2);
  ckpt::write_file_atomic(output + ".recipe.json", s.data(), s.size());
}

// Perplexity on the test text of one format of an engine (decode speed: decode_tps below).
DemoRow measure(runtime::Engine& e, const std::string& family, const std::string& format, const std::vector<std::uint8_t>& text,
                const DemoOptions& o) {
  const auto w = e.weights(format);
  DemoRow r;
  r.family = family;
  r.format = w->format;
  r.bits_per_weight = w->bits_per_weight;
  r.weight_mib = static_cast<double>(w->linear_bytes) / (1024.0 * 1024.0);
  r.source = format == "fp32" ? "fp32 master" : w->format == e.anchor_name() ? "the anchor itself" : "sliced from " + e.anchor_name();
  const auto p = runtime::perplexity(e, w, text, e.config().max_seq, o.ppl_windows);
  r.perplexity = std::exp(p.loss);
  r.bits_per_byte = p.loss / std::log(2.0);
  return r;
}

// Greedy decode speed of one format, one round (tokens/s).
double decode_tps(runtime::Engine& e, const std::string& format, const DemoOptions& o) {
  const auto w = e.weights(format);
  const std::int64_t max_seq = e.config().max_seq, tokens = std::min(o.tokens, max_seq / 2);
  const std::string prompt = o.prompt.substr(0, static_cast<std::size_t>(std::min(static_cast<std::int64_t>(o.prompt.size()), max_seq - tokens)));
  runtime::generate(e, w, prompt.substr(0, 4), 2, {});  // warm-up
  const auto g = runtime::generate(e, w, prompt, tokens, {});
  return g.decode_seconds > 0 ? static_cast<double>(g.new_tokens) / g.decode_seconds : 0;
}

// FNV-1a of a file: the base model's identity in the recipes (a changed base redoes MF-QAT).
std::string file_digest(const std::string& path) {
  std::uint64_t h = 1469598103934665603ull;
  for (const std::uint8_t b : ckpt::read_file(path)) h = (h ^ b) * 1099511628211ull;
  return fmt::format("{:016x}", h);
}

std::vector<mx::Format> mx_list(const std::string& list, const std::string& what) {
  std::vector<mx::Format> r;
  for (const auto& f : model::select_formats(list, std::nullopt)) {
    if (!f) throw std::invalid_argument(what + ": fp32 is not an MX format");
    r.push_back(*f);
  }
  return r;
}

}  // namespace

DemoResult run_demo(const DemoOptions& o, const DemoProgress& progress) {
  // Every format list is checked before any work starts (a typo fails in a second, not after pretraining).
  const mx::Format a_int = mx::find_format("mxint8"), a_fp = mx::find_format("mxfp8_e4m3");
  mx_list(o.int_train, "--int-formats");
  mx_list(o.fp_train, "--fp-formats");
  model::select_formats(o.int_eval, a_int);
  model::select_formats(o.fp_eval, a_fp);
  for (const auto& f : mx_list(o.samples, "--samples")) model::select_formats(f.name, f.name.rfind("mxint", 0) == 0 ? a_int : a_fp);
  if (!o.pretrain && !o.config.empty()) throw std::invalid_argument("--config: only with --pretrain (the base model has its own shape)");
  if (!o.pretrain && !fs::exists(o.base))
    throw std::runtime_error(fmt::format("base model {} not found (run from the repository root, pass --base FILE, or --pretrain)", o.base));
  fs::create_directories(o.out);
  const std::string out = o.out;
  DemoResult res;
  auto stage = [&](int i, const std::string& what) {
    if (progress.stage) progress.stage(i, kStages, what);
  };
  auto log = [&](const std::string& m) {
    if (progress.log) progress.log(m);
  };

  // 1. data
  stage(1, "data: six Austen novels (Persuasion held out for testing)");
  auto t0 = Clock::now();
  if (fs::exists(o.data_dir + "/austen/train.txt") && fs::exists(o.data_dir + "/austen/test.txt")) {
    log(fmt::format("{}/austen already prepared", o.data_dir));
  } else {
    data::PrepareOptions po;
    po.data_dir = o.data_dir;
    po.fashion = false;
    data::prepare(po, [&](const std::string& m) { log("data: " + m); });
  }
  res.stage_seconds.emplace_back("data", since(t0));

  auto train_job = [&](const std::string& output, std::int64_t steps, double lr, std::int64_t warmup) {
    TrainJob j;
    j.config = o.config;
    j.output = output;
    j.steps = steps;
    j.lr = lr;
    j.warmup = warmup;
    j.data_dir = o.data_dir;
    j.seq = o.seq;
    j.batch = o.batch;
    j.threads = num_threads();
    j.save_every = 0;
    return j;
  };
  std::string config_text;
  if (!o.config.empty()) {
    const auto b = ckpt::read_file(o.config);
    config_text.assign(b.begin(), b.end());
  }

  // 2. the fp32 starting point: the shipped base model, or a short pretraining here
  t0 = Clock::now();
  std::string pre;
  nlohmann::json pre_recipe;
  if (!o.pretrain) {
    stage(2, fmt::format("fp32 base model: {} (pretrained by scripts/pretrain_base.sh; --pretrain to train one here instead)", o.base));
    pre = o.base;
    pre_recipe = {{"stage", "base"}, {"fnv1a", file_digest(o.base)}};
    log(fmt::format("{} ({} bytes)", o.base, fs::file_size(o.base)));
  } else {
    stage(2, fmt::format("fp32 pretraining of the byte-level LM, {} steps of {} x {} bytes", o.pretrain_steps, o.batch, o.seq));
    pre = out + "/pre.safetensors";
    pre_recipe = {{"stage", "pretrain"}, {"config", config_text}, {"steps", o.pretrain_steps}, {"lr", o.pretrain_lr},
                  {"seq", o.seq},        {"batch", o.batch},      {"data", fs::absolute(o.data_dir).string()}};
    if (cached(pre, pre_recipe, o.fresh)) {
      log(fmt::format("reusing {} (same recipe; --fresh to redo)", pre));
    } else {
      run_train(train_job(pre, o.pretrain_steps, o.pretrain_lr, std::min<std::int64_t>(30, o.pretrain_steps / 10)), log);
      mark_done(pre, pre_recipe);
    }
  }
  res.stage_seconds.emplace_back("pretrain", since(t0));

  // 3. MF-QAT per family, 4. anchors
  struct Family {
    std::string name, train, eval, anchor;
  };
  const std::vector<Family> fams = {{"int", o.int_train, o.int_eval, "mxint8"}, {"fp", o.fp_train, o.fp_eval, "mxfp8_e4m3"}};
  stage(3, fmt::format("multi-format QAT (joint: every format in each step), {} steps per family", o.qat_steps));
  t0 = Clock::now();
  for (const auto& f : fams) {
    const std::string mf = out + "/mf_" + f.name + ".safetensors";
    const nlohmann::json r = {{"stage", "mf"}, {"pre", pre_recipe}, {"formats", f.train}, {"steps", o.qat_steps}, {"lr", o.qat_lr}};
    if (cached(mf, r, o.fresh)) {
      log(fmt::format("{} family: reusing {}", f.name, mf));
      continue;
    }
    log(fmt::format("{} family: {{{}}}", f.name, f.train));
    auto j = train_job(mf, o.qat_steps, o.qat_lr, std::min<std::int64_t>(4, o.qat_steps / 2));
    j.init = pre;
    j.mode = "mf";
    j.formats = f.train;
    j.strategy = "joint";
    run_train(j, log);
    mark_done(mf, r);
  }
  res.stage_seconds.emplace_back("mf-qat", since(t0));
  stage(4, "export one 8-bit anchor per family (every quantized weight as packed MX)");
  t0 = Clock::now();
  for (const auto& f : fams) {
    const std::string a = out + "/anchor_" + f.name + ".safetensors";
    const auto st = model::export_anchor(model::Checkpoint::open(out + "/mf_" + f.name + ".safetensors"), mx::find_format(f.anchor), a);
    if (progress.anchor) progress.anchor({a, f.anchor, st.bytes_in, st.bytes_out});
  }
  res.stage_seconds.emplace_back("export", since(t0));

  // 5. every format from its anchor on the runtime: perplexity per format, then decode speed in
  // interleaved rounds (one pass per format in a row reads drift in the machine as format gaps)
  stage(5, fmt::format("serve every format from its anchor (runtime, {} thread(s)): perplexity on {} windows of max_seq bytes spread over Persuasion, "
                       "then greedy decode speed, median of {} interleaved rounds",
                       num_threads(), o.ppl_windows, o.decode_rounds));
  t0 = Clock::now();
  const auto text = ckpt::read_file(o.data_dir + "/austen/test.txt");
  if (progress.table) progress.table();
  std::vector<std::unique_ptr<runtime::Engine>> engines;
  std::vector<std::size_t> engine_of;  // per row
  auto add_row = [&](DemoRow r) {
    res.rows.push_back(std::move(r));
    engine_of.push_back(engines.size() - 1);
    if (progress.row) progress.row(res.rows.back());
  };
  engines.push_back(runtime::Engine::open(pre));
  {
    DemoRow r = measure(*engines.back(), "-", "fp32", text, o);
    r.source = o.pretrain ? "fp32 pretrained model (before QAT)" : "fp32 base model (before QAT)";
    add_row(std::move(r));
  }
  for (const auto& f : fams) {
    engines.push_back(runtime::Engine::open(out + "/anchor_" + f.name + ".safetensors"));
    for (const auto& fmt_ : model::select_formats(f.eval, engines.back()->anchor_format())) add_row(measure(*engines.back(), f.name, fmt_->name, text, o));
  }
  std::vector<std::vector<double>> tps(res.rows.size());
  for (std::int64_t round = 0; round < o.decode_rounds; ++round) {
    log(fmt::format("decode round {}/{}", round + 1, o.decode_rounds));
    for (std::size_t i = 0; i < res.rows.size(); ++i) tps[i].push_back(decode_tps(*engines[engine_of[i]], res.rows[i].format, o));
  }
  for (std::size_t i = 0; i < res.rows.size(); ++i) {
    auto& t = tps[i];
    if (t.empty()) continue;
    std::sort(t.begin(), t.end());
    res.rows[i].decode_tps = t.size() % 2 ? t[t.size() / 2] : 0.5 * (t[t.size() / 2 - 1] + t[t.size() / 2]);
    res.rows[i].decode_tps_min = t.front();
    res.rows[i].decode_tps_max = t.back();
  }
  engines.clear();
  res.stage_seconds.emplace_back("evaluate", since(t0));

  // 6. samples
  stage(6, "samples at three formats (temperature 0.7, top-p 0.9, the same seed for each)");
  t0 = Clock::now();
  for (const auto& name : model::select_formats(o.samples, std::nullopt)) {
    const bool is_int = name->name.rfind("mxint", 0) == 0;
    auto e = runtime::Engine::open(out + (is_int ? "/anchor_int.safetensors" : "/anchor_fp.safetensors"));
    const auto w = e->weights(name->name);
    // the prompt and the sample share the model's context of max_seq bytes
    const std::int64_t max_seq = e->config().max_seq;
    const std::string prompt = o.prompt.substr(0, static_cast<std::size_t>(std::min<std::int64_t>(static_cast<std::int64_t>(o.prompt.size()), max_seq / 2)));
    const std::int64_t n = std::min<std::int64_t>(o.sample_bytes, max_seq - static_cast<std::int64_t>(prompt.size()));
    runtime::SamplingOptions so;
    so.temperature = 0.7;
    so.top_p = 0.9;
    so.seed = 1;
    const auto g = runtime::generate(*e, w, prompt, n, so);
    if (progress.sample) progress.sample({name->name, prompt, g.text});
  }
  res.stage_seconds.emplace_back("samples", since(t0));

  if (!o.json.empty()) {
    std::string s;
    for (const auto& r : res.rows) {
      s += nlohmann::json{{"family", r.family},       {"format", r.format},         {"bits_per_weight", r.bits_per_weight},
                          {"weight_mib", r.weight_mib}, {"perplexity", r.perplexity}, {"bits_per_byte", r.bits_per_byte},
                          {"decode_tokens_per_s", r.decode_tps}, {"decode_tokens_per_s_range", {r.decode_tps_min, r.decode_tps_max}},
                          {"source", r.source}}
               .dump() + "\n";
    }
    ckpt::write_file_atomic(o.json, s.data(), s.size());
  }
  return res;
}

}  // namespace mfqat::train
