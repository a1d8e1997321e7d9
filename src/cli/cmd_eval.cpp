#include <fmt/core.h>

#include <nlohmann/json.hpp>
#include "mfqat/mx/parallel.h"

#include "commands.h"
#include "mfqat/train/api.h"

namespace mfqat::cli {

Command add_eval(CLI::App& app) {
  auto* sub = app.add_subcommand("eval", "Evaluate a master or an anchor at each format: loss, perplexity, bits/byte or accuracy");
  auto j = std::make_shared<train::EvalJob>();
  auto json = std::make_shared<bool>(false);
  sub->add_option("model", j->model, "fp32 master or MX anchor (.safetensors)")->required();
  sub->add_option("--formats", j->formats, "comma-separated formats, int, fp or all (default all; fp32 = unquantized master)");
  sub->add_option("--from", j->from, "master: quantize the fp32 weights; anchor: Slice-and-Scale from the anchor (default: what the file is)")
      ->check(CLI::IsMember({"master", "anchor"}));
  sub->add_option("--text", j->text, "LM: evaluate this text file instead of the prepared split");
  sub->add_option("--data-dir", j->data_dir, "prepared data (default data)");
  sub->add_option("--split", j->split, "test (default) or valid")->check(CLI::IsMember({"test", "valid", "train"}));
  sub->add_option("--seq", j->seq, "LM window in bytes (default: the model's max_seq)")->check(CLI::NonNegativeNumber);
  sub->add_option("--batches", j->batches, "LM: batches of windows spread over the text (0: the whole text)")->check(CLI::NonNegativeNumber);
  sub->add_option("--batch", j->batch, "LM: windows per batch")->check(CLI::PositiveNumber);
  sub->add_flag("--json", *json, "print JSON lines, one per format");
  return {sub, [j, json]() {
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
        fmt::print("{}\n", o.dump());
      } else {
        if (!header) {
          fmt::print("{:<12} {:>6} {:>9} {:>10} {:>10}  {}\n", "format", "bpw", "loss", r.accuracy >= 0 ? "accuracy" : "ppl",
                     r.accuracy >= 0 ? "" : "bits/byte", "source");
          header = true;
        }
        if (r.accuracy >= 0) {
          fmt::print("{:<12} {:>6.2f} {:>9.4f} {:>9.2f}% {:>10}  {}\n", r.format, r.bits_per_weight, r.loss, 100 * r.accuracy, "", r.source);
        } else {
          fmt::print("{:<12} {:>6.2f} {:>9.4f} {:>10.3f} {:>10.4f}  {}\n", r.format, r.bits_per_weight, r.loss, r.perplexity,
                     r.bits_per_byte, r.source);
        }
      }
      std::fflush(stdout);
    });
    return 0;
  }};
}

}  // namespace mfqat::cli
