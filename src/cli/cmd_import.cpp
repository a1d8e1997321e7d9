#include <fmt/core.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "commands.h"
#include "mfqat/hf/tokenizer.h"
#include "mfqat/model/checkpoint.h"
#include "util.h"

namespace mfqat::cli {

Command add_import(CLI::App& app) {
  auto* sub = app.add_subcommand("import", "Write a Hugging Face Llama/Mistral/Qwen directory as an mfqat fp32 master (config and tokenizer embedded)");
  struct Opts {
    std::string input, output;
    std::int64_t ctx = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("hf_dir", o->input, "Hugging Face model directory (config.json, model.safetensors or shards, tokenizer.json)")->required();
  sub->add_option("-o,--output", o->output, "fp32 master .safetensors to write")->required();
  sub->add_option("--ctx", o->ctx, "context to record as max_seq (default: min(max_position_embeddings, 4096))")->check(CLI::PositiveNumber);
  sub->add_flag("--json", o->json, "machine-readable summary");
  return {sub, [o]() {
    if (!is_safetensors(o->output)) throw std::invalid_argument(o->output + ": output must be .safetensors");
    if (!model::is_hf_dir(o->input)) throw std::invalid_argument(o->input + ": not a Hugging Face model directory (no config.json)");
    const auto t0 = std::chrono::steady_clock::now();
    const model::Checkpoint src = model::Checkpoint::open(o->input, o->ctx);
    // the tokenizer is embedded as it is: refuse one the runtime could not load, before writing
    if (const auto tj = src.tokenizer_json()) (void)hf::Tokenizer::from_json(*tj, o->input + "/tokenizer.json");
    const model::ExportStats s = model::write_master(src, o->output);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto& c = src.config().lm;
    if (o->json) {
      fmt::print("{}\n", nlohmann::json{{"output", o->output}, {"arch", c.arch}, {"params", src.config().param_count()},
                                        {"tensors", s.f32_tensors}, {"bytes_in", s.bytes_in}, {"bytes_out", s.bytes_out},
                                        {"tokenizer", src.tokenizer_json().has_value()}, {"seconds", secs}}
                             .dump());
    } else {
      fmt::print("{}: {} ({} layers, {} wide, vocab {}), {} tensors, {} -> {} in {:.1f} s{}\n", o->output, c.arch, c.n_layers, c.dim, c.vocab,
                 s.f32_tensors, human_bytes(static_cast<double>(s.bytes_in)), human_bytes(static_cast<double>(s.bytes_out)), secs,
                 src.tokenizer_json() ? ", tokenizer embedded" : ", no tokenizer.json");
    }
    return 0;
  }};
}

}  // namespace mfqat::cli
