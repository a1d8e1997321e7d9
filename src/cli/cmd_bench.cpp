#include <fmt/core.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "mfqat/ckpt/file.h"
#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/engine.h"
#include "util.h"

namespace mfqat::cli {

namespace {

model::LmConfig synthetic_config(const std::string& spec) {
  model::ModelConfig c;
  if (spec == "large") {  // LLM-like width so that decode is memory-bound
    c.lm.dim = 2048;
    c.lm.n_layers = 16;
    c.lm.n_heads = 16;
    c.lm.max_seq = 512;
  } else if (spec == "medium") {
    c.lm.dim = 1024;
    c.lm.n_layers = 8;
    c.lm.n_heads = 8;
    c.lm.max_seq = 512;
  } else if (spec != "default") {
    const auto b = ckpt::read_file(spec);
    c = model::ModelConfig::from_json(std::string(b.begin(), b.end()), spec);
    if (c.kind != model::Kind::Lm) throw std::invalid_argument(spec + ": --synthetic needs a language-model config");
  }
  return c.lm;
}

}  // namespace

Command add_bench(CLI::App& app) {
  auto* sub = app.add_subcommand("bench", "Per format: bits/weight, resident bytes, derive time, prefill/decode tokens/s, perplexity");
  struct Opts {
    bool int8_act = false;
    std::string model, synthetic, anchor = "mxint8", formats = "all,fp32", text;
    std::int64_t prompt = 64, tokens = 32, ppl_windows = 4, seq = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("model", o->model, "anchor or fp32 master (.safetensors)");
  sub->add_option("--synthetic", o->synthetic, "random-weight model instead: default, medium, large (2048 wide, 16 layers) or a config JSON");
  sub->add_option("--anchor", o->anchor, "--synthetic: the anchor format (default mxint8)");
  sub->add_option("--formats", o->formats, "formats to measure (names, int, fp, all; fp32 = dequantized weights, OpenBLAS)");
  sub->add_option("--prompt", o->prompt, "prefill length in bytes")->check(CLI::PositiveNumber);
  sub->add_option("--tokens", o->tokens, "decode steps")->check(CLI::PositiveNumber);
  sub->add_option("--text", o->text, "also measure perplexity on this text");
  sub->add_option("--ppl-windows", o->ppl_windows, "--text: windows of max_seq bytes to score, spread over the text (0: all of it)")->check(CLI::NonNegativeNumber);
  sub->add_flag("--json", o->json, "JSON lines, one per format");
  sub->add_flag("--int8-act", o->int8_act, "decode with int8 activations where the format allows (MXINT8, 4-bit): faster, not bit-faithful to training");
  return {sub, [o]() {
    if (o->model.empty() == o->synthetic.empty()) throw std::invalid_argument("give a checkpoint or --synthetic CONFIG (one of them)");
    const auto t0 = std::chrono::steady_clock::now();
    auto e = o->synthetic.empty() ? runtime::Engine::open(o->model)
                                  : runtime::Engine::synthetic(synthetic_config(o->synthetic), mx::find_format(o->anchor));
    e->set_int8_activations(o->int8_act);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto& c = e->config();
    if (o->prompt + o->tokens > c.max_seq) throw std::invalid_argument("--prompt + --tokens exceeds the model's max_seq " + std::to_string(c.max_seq));
    const auto formats = model::select_formats(o->formats, e->anchor_format(), /*allow_fp32=*/true);
    std::vector<std::uint8_t> text;
    if (!o->text.empty()) text = ckpt::read_file(o->text);
    if (!o->json) {
      fmt::print("model: dim {} layers {} heads {} ffn {} ({}), anchor {} ({}), loaded in {:.2f}s\n", c.dim, c.n_layers, c.n_heads, c.hidden(),
                 o->synthetic.empty() ? o->model : "synthetic " + o->synthetic, e->anchor_name(),
                 human_bytes(static_cast<double>(e->anchor_bytes())), load_s);
      fmt::print("{:<12} {:>6} {:>11} {:>10} {:>12} {:>11}{}\n", "format", "bpw", "weights", "derive_s", "prefill t/s", "decode t/s",
                 text.empty() ? "" : "   ppl  bits/byte");
    }
    // A fixed prompt of printable bytes.
    std::string prompt;
    for (std::int64_t i = 0; i < o->prompt; ++i) prompt.push_back(static_cast<char>('a' + i % 26));
    for (const auto& f : formats) {
      const std::string name = f ? f->name : "fp32";
      e->evict(name);  // measure the derivation from the anchor, not a cache hit
      const auto w = e->weights(name);
      runtime::generate(*e, w, prompt.substr(0, 8), 2, {});  // warm-up
      const auto g = runtime::generate(*e, w, prompt, o->tokens, {});
      const double pre = static_cast<double>(g.prompt_tokens) / g.prefill_seconds, dec = static_cast<double>(g.new_tokens) / g.decode_seconds;
      nlohmann::json j = {{"format", name},          {"bits_per_weight", w->bits_per_weight}, {"weight_bytes", w->linear_bytes}, {"extra_bytes", w->owned_bytes},
                          {"derive_seconds", w->derive_seconds}, {"prefill_tokens_per_s", pre}, {"decode_tokens_per_s", dec},
                          {"anchor", e->anchor_name()}, {"threads", num_threads()},
                          {"int8_activations", o->int8_act}};
      runtime::Perplexity p;
      if (!text.empty()) {
        p = runtime::perplexity(*e, w, text, o->seq > 0 ? o->seq : c.max_seq, o->ppl_windows);
        j["loss"] = p.loss;
        j["perplexity"] = std::exp(p.loss);
        j["bits_per_byte"] = p.loss / std::log(2.0);
        j["ppl_bytes"] = p.bytes;
      }
      if (o->json) {
        fmt::print("{}\n", j.dump());
      } else {
        fmt::print("{:<12} {:>6.2f} {:>11} {:>10.3f} {:>12.0f} {:>11.1f}{}\n", name, w->bits_per_weight,
                   human_bytes(static_cast<double>(w->linear_bytes)), w->derive_seconds, pre, dec,
                   text.empty() ? "" : fmt::format(" {:>7.3f} {:>9.4f}", std::exp(p.loss), p.loss / std::log(2.0)));
      }
      std::fflush(stdout);
      e->evict(name);  // one format resident at a time
    }
    return 0;
  }};
}

}  // namespace mfqat::cli
