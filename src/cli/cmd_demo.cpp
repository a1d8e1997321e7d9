// `mfqat demo`: the main job end to end (train::run_demo, src/train/demo.cpp). Prepare the data,
// start from the shipped base LM (or pretrain one with --pretrain), run MF-QAT for the integer and the FP family, export both
// anchors, evaluate every format of each family from its anchor on the runtime (perplexity +
// decode speed), generate samples at three formats and print one table. Every stage's output is
// cached in --out with the recipe that made it; a second run reuses what still matches.
// This file: the flags and the printing.
#include <fmt/core.h>

#include <chrono>
#include <cstdio>

#include "commands.h"
#include "mfqat/train/demo.h"
#include "util.h"

namespace mfqat::cli {

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void print_header(bool decode) {
  fmt::print("  {:<6} {:<12} {:>7} {:>10} {:>11} {:>10} {:>18}  {}\n", "family", "format", "bits/w", "weight MiB", "perplexity", "bits/byte",
             decode ? "decode t/s (range)" : "", "weights from");
}
void print_row(const train::DemoRow& r, bool decode) {
  const std::string d = decode ? fmt::format("{:.0f} ({:.0f}-{:.0f})", r.decode_tps, r.decode_tps_min, r.decode_tps_max) : "";
  fmt::print("  {:<6} {:<12} {:>7.2f} {:>10.2f} {:>11.3f} {:>10.4f} {:>18}  {}\n", r.family, r.format, r.bits_per_weight, r.weight_mib,
             r.perplexity, r.bits_per_byte, d, r.source);
  std::fflush(stdout);
}

// The prompt and the sample on one line, control and non-ASCII bytes shown as ' ' and '?'.
std::string shown(const train::DemoSample& s) {
  std::string t = s.prompt + s.text;
  for (auto& c : t) {
    if (c == '\n' || c == '\r') c = ' ';
    else if (static_cast<unsigned char>(c) < 32 || static_cast<unsigned char>(c) > 126) c = '?';
  }
  return t;
}

}  // namespace

Command add_demo(CLI::App& app) {
  auto* sub = app.add_subcommand("demo", "The main job: from the shipped base LM, MF-QAT both families, export anchors, serve every format, one table");
  auto o = std::make_shared<train::DemoOptions>();
  sub->add_option("--out", o->out, "working directory for checkpoints and caches (default out/demo)");
  sub->add_option("--data-dir", o->data_dir, "prepared data; prepared here when missing (default data)");
  sub->add_option("--base", o->base, "fp32 base model MF-QAT starts from (default models/austen-base/base.safetensors, shipped)");
  sub->add_flag("--pretrain", o->pretrain, "pretrain a model here (--pretrain-steps, --config) instead of starting from the base model");
  sub->add_option("--config", o->config, "with --pretrain: model config JSON (default: the built-in LM)");
  sub->add_option("--pretrain-steps", o->pretrain_steps, "with --pretrain: fp32 pretraining steps (default 200, ~5 min on 2 cores)")->check(CLI::PositiveNumber);
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
  sub->add_option("--tokens", o->tokens, "greedy decode steps timed per format and round")->check(CLI::PositiveNumber);
  sub->add_option("--decode-rounds", o->decode_rounds, "decode speed: median of this many rounds over every format, interleaved (0: not measured)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--samples", o->samples, "formats to generate a sample at (from the mxint8 or mxfp8_e4m3 anchor; same sampling seed for each)");
  sub->add_option("--sample-bytes", o->sample_bytes, "bytes per sample")->check(CLI::NonNegativeNumber);
  sub->add_option("--prompt", o->prompt, "sample prompt");
  sub->add_option("--json", o->json, "also write the table as JSON lines to this file");
  sub->add_flag("--fresh", o->fresh, "ignore cached stages and redo everything");
  return {sub, [o]() {
    const auto t_start = Clock::now();
    train::DemoProgress p;
    p.stage = [](int i, int n, const std::string& what) {
      fmt::print("\n== [{}/{}] {}\n", i, n, what);
      std::fflush(stdout);  // the trainer's progress bar goes to stderr
    };
    p.log = [](const std::string& m) {
      fmt::print("  {}\n", m);
      std::fflush(stdout);
    };
    p.anchor = [](const train::DemoAnchor& a) {
      fmt::print("  {}: {} anchor, {} -> {}\n", a.path, a.format, human_bytes(static_cast<double>(a.bytes_in)),
                 human_bytes(static_cast<double>(a.bytes_out)));
    };
    p.table = [] { print_header(false); };
    p.row = [](const train::DemoRow& r) { print_row(r, false); };
    p.sample = [](const train::DemoSample& s) { fmt::print("  [{:<10}] {}\n", s.format, shown(s)); };
    const train::DemoResult res = train::run_demo(*o, p);

    fmt::print("\n== Summary: one fp32 master per family, one 8-bit anchor each, every format served from it\n");
    print_header(o->decode_rounds > 0);
    for (const auto& r : res.rows) print_row(r, o->decode_rounds > 0);
    fmt::print("\nThe weights shrink with the format; the decode speed of a model this small (its fp32 weights fit in\n"
               "the CPU caches) is compute-bound, so fp32 BLAS can be fastest here. The speed each format buys shows on\n"
               "memory-bound models: `mfqat bench --synthetic large --formats mxint8,mxint4,mxfp4,fp32` (docs/perf.md).\n");
    std::string times;
    for (const auto& [k, v] : res.stage_seconds) times += fmt::format("{}{} {:.0f}s", times.empty() ? "" : ", ", k, v);
    fmt::print("\nwall time {:.0f} s ({}); outputs in {}/\n", since(t_start), times, o->out);
    return 0;
  }};
}

}  // namespace mfqat::cli
