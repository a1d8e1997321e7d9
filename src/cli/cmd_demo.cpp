// `mfqat demo`: the main job end to end. Prepare the data, pretrain the default LM (or reuse it),
// run MF-QAT for the integer and the FP family, export both anchors, evaluate every format of
// each family from its anchor on the runtime (perplexity + decode speed), generate samples at
// three formats and print one table. Every stage's output is cached in --out with the recipe
// that made it; a second run reuses what still matches.
#include <fmt/core.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "mfqat/ckpt/file.h"
#include "mfqat/data/prepare.h"
#include "mfqat/model/checkpoint.h"
#include "mfqat/mx/format.h"
#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/engine.h"
#include "mfqat/train/api.h"
#include "util.h"

namespace mfqat::cli {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct DemoOpts {
  std::string out = "out/demo", data_dir = "data", config;
  std::int64_t pretrain_steps = 200, qat_steps = 10, seq = 128, batch = 16, ppl_windows = 64, tokens = 64, sample_bytes = 160;
  double pretrain_lr = 3e-3, qat_lr = 3e-4;
  std::string int_train = "mxint2,mxint4,mxint6,mxint8", fp_train = "mxfp4_e2m1,mxfp6_e2m3,mxfp8_e4m3";
  std::string int_eval = "int", fp_eval = "mxfp8_e4m3,mxfp7_e3m3,mxfp6_e3m2,mxfp6_e2m3,mxfp5_e2m2,mxfp4_e2m1";
  std::string samples = "mxint8,mxint4,mxint2", prompt = "It is a truth universally acknowledged, that";
  std::string json;
  bool fresh = false;
};

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

struct Row {
  std::string family, format, source;
  double bits_per_weight = 0, weight_mib = 0, perplexity = 0, bits_per_byte = 0, decode_tps = 0;
};

void print_header() {
  fmt::print("  {:<6} {:<12} {:>7} {:>10} {:>11} {:>10} {:>11}  {}\n", "family", "format", "bits/w", "weight MiB", "perplexity", "bits/byte",
             "decode t/s", "weights from");
}
void print_row(const Row& r) {
  fmt::print("  {:<6} {:<12} {:>7.2f} {:>10.2f} {:>11.3f} {:>10.4f} {:>11.0f}  {}\n", r.family, r.format, r.bits_per_weight, r.weight_mib,
             r.perplexity, r.bits_per_byte, r.decode_tps, r.source);
  std::fflush(stdout);
}

// Perplexity on the test text and greedy decode speed of one format of an engine.
Row measure(runtime::Engine& e, const std::string& family, const std::string& format, const std::vector<std::uint8_t>& text,
            const DemoOpts& o) {
  e.evict(format);
  const auto w = e.weights(format);
  Row r;
  r.family = family;
  r.format = w->format;
  r.bits_per_weight = w->bits_per_weight;
  r.weight_mib = static_cast<double>(w->linear_bytes) / (1024.0 * 1024.0);
  r.source = format == "fp32" ? "fp32 master" : w->format == e.anchor_name() ? "the anchor itself" : "sliced from " + e.anchor_name();
  const auto p = runtime::perplexity(e, w, text, e.config().max_seq, o.ppl_windows);
  r.perplexity = std::exp(p.loss);
  r.bits_per_byte = p.loss / std::log(2.0);
  const std::int64_t max_seq = e.config().max_seq, tokens = std::min(o.tokens, max_seq / 2);
  const std::string prompt = o.prompt.substr(0, static_cast<std::size_t>(std::min(static_cast<std::int64_t>(o.prompt.size()), max_seq - tokens)));
  runtime::generate(e, w, prompt.substr(0, 4), 2, {});  // warm-up
  const auto g = runtime::generate(e, w, prompt, tokens, {});
  r.decode_tps = g.decode_seconds > 0 ? static_cast<double>(g.new_tokens) / g.decode_seconds : 0;
  e.evict(format);  // one derived format resident at a time
  return r;
}

}  // namespace

Command add_demo(CLI::App& app) {
  auto* sub = app.add_subcommand("demo", "The main job: pretrain, MF-QAT both families, export anchors, serve every format, one table");
  auto o = std::make_shared<DemoOpts>();
  sub->add_option("--out", o->out, "working directory for checkpoints and caches (default out/demo)");
  sub->add_option("--data-dir", o->data_dir, "prepared data; prepared here when missing (default data)");
  sub->add_option("--config", o->config, "model config JSON (default: the built-in LM)");
  sub->add_option("--pretrain-steps", o->pretrain_steps, "fp32 pretraining steps (default 200, ~5 min on 2 cores)")->check(CLI::PositiveNumber);
  sub->add_option("--pretrain-lr", o->pretrain_lr, "pretraining peak learning rate");
  sub->add_option("--qat-steps", o->qat_steps, "MF-QAT steps per family (joint strategy)")->check(CLI::PositiveNumber);
  sub->add_option("--qat-lr", o->qat_lr, "MF-QAT peak learning rate");
  sub->add_option("--seq", o->seq, "training sequence length (bytes)")->check(CLI::PositiveNumber);
  sub->add_option("--batch", o->batch, "training sequences per step")->check(CLI::PositiveNumber);
  sub->add_option("--int-formats", o->int_train, "MF-QAT training formats, integer family (anchor mxint8)");
  sub->add_option("--fp-formats", o->fp_train, "MF-QAT training formats, FP family (anchor mxfp8_e4m3)");
  sub->add_option("--int-eval", o->int_eval, "formats to serve from the mxint8 anchor (default int = every derivable MXINT)");
  sub->add_option("--fp-eval", o->fp_eval, "formats to serve from the mxfp8_e4m3 anchor");
  sub->add_option("--ppl-windows", o->ppl_windows, "windows of max_seq bytes, spread over the test novel, scored per format")->check(CLI::PositiveNumber);
  sub->add_option("--tokens", o->tokens, "greedy decode steps timed per format")->check(CLI::PositiveNumber);
  sub->add_option("--samples", o->samples, "formats to generate a sample at (from the mxint8 or mxfp8_e4m3 anchor; same sampling seed for each)");
  sub->add_option("--sample-bytes", o->sample_bytes, "bytes per sample")->check(CLI::NonNegativeNumber);
  sub->add_option("--prompt", o->prompt, "sample prompt");
  sub->add_option("--json", o->json, "also write the table as JSON lines to this file");
  sub->add_flag("--fresh", o->fresh, "ignore cached stages and redo everything");
  return {sub, [o]() {
    const auto t_start = Clock::now();
    // Every format list is checked before any work starts (a typo fails in a second, not after pretraining).
    const mx::Format a_int = mx::find_format("mxint8"), a_fp = mx::find_format("mxfp8_e4m3");
    auto mx_list = [](const std::string& list, const std::string& what) {
      std::vector<mx::Format> r;
      for (const auto& f : model::select_formats(list, std::nullopt)) {
        if (!f) throw std::invalid_argument(what + ": fp32 is not an MX format");
        r.push_back(*f);
      }
      return r;
    };
    mx_list(o->int_train, "--int-formats");
    mx_list(o->fp_train, "--fp-formats");
    model::select_formats(o->int_eval, a_int);
    model::select_formats(o->fp_eval, a_fp);
    for (const auto& f : mx_list(o->samples, "--samples")) model::select_formats(f.name, f.name.rfind("mxint", 0) == 0 ? a_int : a_fp);
    fs::create_directories(o->out);
    const std::string out = o->out;
    std::vector<std::pair<std::string, double>> stage_s;
    auto stage = [&](int i, const std::string& what) {
      fmt::print("\n== [{}/6] {}\n", i, what);
      std::fflush(stdout);  // the trainer's progress bar goes to stderr
    };

    // 1. data
    stage(1, "data: six Austen novels (Persuasion held out for testing)");
    auto t0 = Clock::now();
    if (fs::exists(o->data_dir + "/austen/train.txt") && fs::exists(o->data_dir + "/austen/test.txt")) {
      fmt::print("  {}/austen already prepared\n", o->data_dir);
    } else {
      data::PrepareOptions po;
      po.data_dir = o->data_dir;
      po.fashion = false;
      data::prepare(po, [](const std::string& m) { fmt::print("  data: {}\n", m); });
    }
    stage_s.emplace_back("data", since(t0));

    auto train_job = [&](const std::string& output, std::int64_t steps, double lr, std::int64_t warmup) {
      train::TrainJob j;
      j.config = o->config;
      j.output = output;
      j.steps = steps;
      j.lr = lr;
      j.warmup = warmup;
      j.data_dir = o->data_dir;
      j.seq = o->seq;
      j.batch = o->batch;
      j.threads = num_threads();
      j.save_every = 0;
      return j;
    };
    auto log = [](const std::string& m) {
      fmt::print("  {}\n", m);
      std::fflush(stdout);
    };
    std::string config_text;
    if (!o->config.empty()) {
      const auto b = ckpt::read_file(o->config);
      config_text.assign(b.begin(), b.end());
    }

    // 2. pretraining
    stage(2, fmt::format("fp32 pretraining of the byte-level LM, {} steps of {} x {} bytes", o->pretrain_steps, o->batch, o->seq));
    t0 = Clock::now();
    const std::string pre = out + "/pre.safetensors";
    const nlohmann::json pre_recipe = {{"stage", "pretrain"}, {"config", config_text}, {"steps", o->pretrain_steps}, {"lr", o->pretrain_lr},
                                       {"seq", o->seq},       {"batch", o->batch},     {"data", fs::absolute(o->data_dir).string()}};
    if (cached(pre, pre_recipe, o->fresh)) {
      fmt::print("  reusing {} (same recipe; --fresh to redo)\n", pre);
    } else {
      train::run_train(train_job(pre, o->pretrain_steps, o->pretrain_lr, std::min<std::int64_t>(30, o->pretrain_steps / 10)), log);
      mark_done(pre, pre_recipe);
    }
    stage_s.emplace_back("pretrain", since(t0));

    // 3. MF-QAT per family, 4. anchors
    struct Family {
      std::string name, train, eval, anchor;
    };
    const std::vector<Family> fams = {{"int", o->int_train, o->int_eval, "mxint8"}, {"fp", o->fp_train, o->fp_eval, "mxfp8_e4m3"}};
    stage(3, fmt::format("multi-format QAT (joint: every format in each step), {} steps per family", o->qat_steps));
    t0 = Clock::now();
    for (const auto& f : fams) {
      const std::string mf = out + "/mf_" + f.name + ".safetensors";
      const nlohmann::json r = {{"stage", "mf"}, {"pre", pre_recipe}, {"formats", f.train}, {"steps", o->qat_steps}, {"lr", o->qat_lr}};
      if (cached(mf, r, o->fresh)) {
        fmt::print("  {} family: reusing {}\n", f.name, mf);
        continue;
      }
      fmt::print("  {} family: {{{}}}\n", f.name, f.train);
      std::fflush(stdout);
      auto j = train_job(mf, o->qat_steps, o->qat_lr, std::min<std::int64_t>(4, o->qat_steps / 2));
      j.init = pre;
      j.mode = "mf";
      j.formats = f.train;
      j.strategy = "joint";
      train::run_train(j, log);
      mark_done(mf, r);
    }
    stage_s.emplace_back("mf-qat", since(t0));
    stage(4, "export one 8-bit anchor per family (every quantized weight as packed MX)");
    t0 = Clock::now();
    for (const auto& f : fams) {
      const std::string a = out + "/anchor_" + f.name + ".safetensors";
      const auto st = model::export_anchor(model::Checkpoint::open(out + "/mf_" + f.name + ".safetensors"), mx::find_format(f.anchor), a);
      fmt::print("  {}: {} anchor, {} -> {}\n", a, f.anchor, human_bytes(static_cast<double>(st.bytes_in)),
                 human_bytes(static_cast<double>(st.bytes_out)));
    }
    stage_s.emplace_back("export", since(t0));

    // 5. every format from its anchor on the runtime
    stage(5, fmt::format("serve every format from its anchor (runtime, {} thread(s)): perplexity on {} windows of max_seq bytes spread over Persuasion, greedy decode",
                         num_threads(), o->ppl_windows));
    t0 = Clock::now();
    const auto text = ckpt::read_file(o->data_dir + "/austen/test.txt");
    std::vector<Row> rows;
    print_header();
    {
      auto e = runtime::Engine::open(pre);
      rows.push_back(measure(*e, "-", "fp32", text, *o));
      rows.back().source = "fp32 pretrained model (before QAT)";
      print_row(rows.back());
    }
    for (const auto& f : fams) {
      auto e = runtime::Engine::open(out + "/anchor_" + f.name + ".safetensors");
      for (const auto& fmt_ : model::select_formats(f.eval, e->anchor_format())) {
        rows.push_back(measure(*e, f.name, fmt_->name, text, *o));
        print_row(rows.back());
      }
    }
    stage_s.emplace_back("evaluate", since(t0));

    // 6. samples
    stage(6, "samples at three formats (temperature 0.7, top-p 0.9, the same seed for each)");
    t0 = Clock::now();
    for (const auto& name : model::select_formats(o->samples, std::nullopt)) {
      const bool is_int = name->name.rfind("mxint", 0) == 0;
      auto e = runtime::Engine::open(out + (is_int ? "/anchor_int.safetensors" : "/anchor_fp.safetensors"));
      const auto w = e->weights(name->name);
      // the prompt and the sample share the model's context of max_seq bytes
      const std::int64_t max_seq = e->config().max_seq;
      const std::string prompt = o->prompt.substr(0, static_cast<std::size_t>(std::min<std::int64_t>(static_cast<std::int64_t>(o->prompt.size()), max_seq / 2)));
      const std::int64_t n = std::min<std::int64_t>(o->sample_bytes, max_seq - static_cast<std::int64_t>(prompt.size()));
      runtime::SamplingOptions so;
      so.temperature = 0.7;
      so.top_p = 0.9;
      so.seed = 1;
      const auto g = runtime::generate(*e, w, prompt, n, so);
      std::string shown = prompt + g.text;
      for (auto& c : shown) {
        if (c == '\n' || c == '\r') c = ' ';
        else if (static_cast<unsigned char>(c) < 32 || static_cast<unsigned char>(c) > 126) c = '?';
      }
      fmt::print("  [{:<10}] {}\n", name->name, shown);
    }
    stage_s.emplace_back("samples", since(t0));

    if (!o->json.empty()) {
      std::string s;
      for (const auto& r : rows) {
        s += nlohmann::json{{"family", r.family},       {"format", r.format},         {"bits_per_weight", r.bits_per_weight},
                            {"weight_mib", r.weight_mib}, {"perplexity", r.perplexity}, {"bits_per_byte", r.bits_per_byte},
                            {"decode_tokens_per_s", r.decode_tps}, {"source", r.source}}
                 .dump() + "\n";
      }
      ckpt::write_file_atomic(o->json, s.data(), s.size());
    }
    fmt::print("\n== Summary: one fp32 master per family, one 8-bit anchor each, every format served from it\n");
    print_header();
    for (const auto& r : rows) print_row(r);
    fmt::print("\nThe weights shrink with the format; the decode speed of a model this small (its fp32 weights fit in\n"
               "the CPU caches) is compute-bound, so fp32 BLAS can be fastest here. The speed each format buys shows on\n"
               "memory-bound models: `mfqat bench --synthetic large --formats mxint8,mxint4,mxfp4,fp32` (docs/perf.md).\n");
    std::string times;
    for (const auto& [k, v] : stage_s) times += fmt::format("{}{} {:.0f}s", times.empty() ? "" : ", ", k, v);
    fmt::print("\nwall time {:.0f} s ({}); outputs in {}/\n", since(t_start), times, out);
    return 0;
  }};
}

}  // namespace mfqat::cli
