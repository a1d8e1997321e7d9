#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "kernel_flags.h"
#include "mfqat/ckpt/file.h"
#include "mfqat/mx/parallel.h"
#include "plan_flags.h"
#include "mfqat/runtime/engine.h"
#include "mfqat/runtime/generate.h"
#include "mfqat/runtime/session.h"
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

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

Command add_bench(CLI::App& app) {
  auto* sub = app.add_subcommand("bench", "Per format: bits/weight, resident bytes, derive time, prefill/decode tokens/s, perplexity");
  struct Opts {
    KernelFlags kf;
    std::int64_t ctx = 0;
    std::string model, synthetic, anchor = "mxint8", formats = "all,fp32", text;
    PlanFlags pf;
    std::int64_t prompt = 64, tokens = 32, ppl_windows = 4, seq = 0, rounds = 1, batch = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("model", o->model, "anchor or fp32 master (.safetensors), or a Hugging Face model directory");
  sub->add_option("--synthetic", o->synthetic, "random-weight model instead: default, medium, large (2048 wide, 16 layers) or a config JSON");
  sub->add_option("--anchor", o->anchor,
                  "--synthetic: the anchor format (default mxint8); a list (mxint8,mxfp8_e4m3) builds one model per anchor from the same "
                  "random weights, each format measured on the first anchor that derives it");
  sub->add_option("--formats", o->formats, "formats to measure (names, int, fp, all; fp32 = dequantized weights, OpenBLAS)");
  sub->add_option("--prompt", o->prompt, "prefill length in bytes")->check(CLI::PositiveNumber);
  sub->add_option("--tokens", o->tokens, "decode steps")->check(CLI::PositiveNumber);
  sub->add_option("--rounds", o->rounds,
                  "measure every format this many times, interleaved (all formats resident at once), and report the medians: "
                  "ratios between formats then hold on a machine whose speed drifts")
      ->check(CLI::PositiveNumber);
  sub->add_option("--text", o->text, "also measure perplexity on this text");
  sub->add_option("--ppl-windows", o->ppl_windows, "--text: windows of max_seq bytes to score, spread over the text (0: all of it)")->check(CLI::NonNegativeNumber);
  sub->add_flag("--json", o->json, "JSON lines, one per format");
  sub->add_option("--batch", o->batch,
                  "also time batched decode: N sessions (each after the prompt) advance one token per step together, as the server's "
                  "continuous batching runs them (--tokens steps); aggregate tokens/s and ms per step")
      ->check(CLI::Range(2, 256));
  sub->add_option("--ctx", o->ctx, "context in tokens: sizes the KV cache (default: the model's max_seq; Hugging Face models: min(max_position_embeddings, 4096))")
      ->check(CLI::PositiveNumber);
  add_kernel_flags(sub, o->kf);
  add_plan_flags(sub, o->pf, /*many=*/true);  // measured beside the formats, on the first anchor
  return {sub, [o]() {
    const runtime::KernelOptions kern = kernel_options(o->kf);
    if (o->model.empty() == o->synthetic.empty()) throw std::invalid_argument("give a checkpoint or --synthetic CONFIG (one of them)");
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::unique_ptr<runtime::Engine>> engines;
    if (o->synthetic.empty()) {
      engines.push_back(runtime::Engine::open(o->model, o->ctx));
    } else {
      const model::LmConfig cfg = synthetic_config(o->synthetic);
      for (const std::string& a : split_list(o->anchor)) engines.push_back(runtime::Engine::synthetic(cfg, mx::find_format(a)));
      if (engines.empty()) throw std::invalid_argument("--anchor: no format given");
    }
    for (auto& e : engines) e->set_kernels(kern);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto& c = engines[0]->config();
    if (o->prompt + o->tokens > c.max_seq) throw std::invalid_argument("--prompt + --tokens exceeds the model's max_seq " + std::to_string(c.max_seq));
    // Each format on the first engine that derives it (family words: on every engine; fp32 on the first).
    struct Row {
      runtime::Engine* e;
      std::string name;
      std::shared_ptr<const runtime::Weights> w;
      std::vector<double> pre, dec, bat;  // bat: ms per batched step
    };
    std::vector<Row> rows;
    const auto add = [&](runtime::Engine* e, const std::optional<mx::Format>& f) {
      const std::string name = f ? f->name : "fp32";
      for (const Row& r : rows) {
        if (r.name == name) return;
      }
      rows.push_back({e, name, nullptr, {}, {}, {}});
    };
    for (const std::string& item : split_list(o->formats)) {
      const bool family = item == "int" || item == "fp" || item == "all";
      std::string why;
      bool found = false;
      for (std::size_t i = 0; i < engines.size() && !(found && !family); ++i) {
        if (item == "fp32" && i > 0) break;
        try {
          for (const auto& f : model::select_formats(item, engines[i]->anchor_format(), /*allow_fp32=*/true)) add(engines[i].get(), f);
          found = true;
        } catch (const std::invalid_argument& ex) {
          if (why.empty()) why = ex.what();
        }
      }
      if (!found) throw std::invalid_argument(why);
    }
    for (const auto& p : load_plans(*engines[0], o->pf)) rows.push_back({engines[0].get(), p.name, nullptr, {}, {}, {}});
    if (rows.empty()) throw std::invalid_argument("no format to measure in '" + o->formats + "'");
    std::vector<std::uint8_t> text;
    if (!o->text.empty()) text = ckpt::read_file(o->text);
    if (!o->json) {
      std::string anchors;
      for (const auto& e : engines) anchors += (anchors.empty() ? "" : ", ") + e->anchor_name() + " (" + human_bytes(static_cast<double>(e->anchor_bytes())) + ")";
      fmt::print("model: dim {} layers {} heads {} ffn {} ({}), anchor {}, loaded in {:.2f}s{}\n", c.dim, c.n_layers, c.n_heads, c.hidden(),
                 o->synthetic.empty() ? o->model : "synthetic " + o->synthetic, anchors, load_s,
                 o->rounds > 1 ? fmt::format(", medians of {} interleaved rounds", o->rounds) : "");
      fmt::print("{:<12} {:>6} {:>11} {:>10} {:>12} {:>11}{}{}\n", "format", "bpw", "weights", "derive_s", "prefill t/s", "decode t/s",
                 o->batch > 1 ? fmt::format(" {:>14} {:>9}", fmt::format("batch {} t/s", o->batch), "ms/step") : "", text.empty() ? "" : "   ppl  bits/byte");
    }
    // A fixed prompt of printable bytes.
    std::string prompt;
    for (std::int64_t i = 0; i < o->prompt; ++i) prompt.push_back(static_cast<char>('a' + i % 26));
    const auto derive = [&](Row& r) {
      r.e->evict(r.name);  // measure the derivation from the anchor, not a cache hit
      r.w = r.e->weights(r.name);
      runtime::generate(*r.e, r.w, prompt.substr(0, 8), 2, {});  // warm-up
    };
    const auto measure = [&](Row& r) {
      const auto g = runtime::generate(*r.e, r.w, prompt, o->tokens, {});
      r.pre.push_back(static_cast<double>(g.prompt_tokens) / g.prefill_seconds);
      r.dec.push_back(static_cast<double>(g.new_tokens) / g.decode_seconds);
      if (o->batch > 1) {  // N sessions read the prompt (one step each), then --tokens steps of N rows
        const std::vector<int> ids = runtime::encode_prompt(*r.e, prompt);
        std::vector<std::unique_ptr<runtime::Session>> ss;
        std::vector<std::vector<float>> out;
        for (std::int64_t i = 0; i < o->batch; ++i) {
          ss.push_back(std::make_unique<runtime::Session>(*r.e, r.w, static_cast<std::int64_t>(ids.size()) + o->tokens));
          ss.back()->feed(ids);
        }
        std::vector<int> next(static_cast<std::size_t>(o->batch));
        for (std::int64_t i = 0; i < o->batch; ++i) next[static_cast<std::size_t>(i)] = static_cast<int>((i * 7 + 3) % c.vocab);
        const auto t0 = std::chrono::steady_clock::now();
        for (std::int64_t t = 0; t < o->tokens; ++t) {
          std::vector<runtime::Session::Piece> ps;
          for (std::int64_t i = 0; i < o->batch; ++i) ps.push_back({ss[static_cast<std::size_t>(i)].get(), &next[static_cast<std::size_t>(i)], 1, true});
          runtime::Session::step(ps, &out);
          for (std::int64_t i = 0; i < o->batch; ++i) {  // greedy: the next token of each
            const auto& lg = out[static_cast<std::size_t>(i)];
            next[static_cast<std::size_t>(i)] = static_cast<int>(std::max_element(lg.begin(), lg.end()) - lg.begin());
          }
        }
        r.bat.push_back(1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / static_cast<double>(o->tokens));
      }
    };
    const auto report = [&](Row& r) {
      const auto& w = *r.w;
      const double pre = median(r.pre), dec = median(r.dec);
      nlohmann::json j = {{"format", r.name},          {"bits_per_weight", w.bits_per_weight}, {"weight_bytes", w.linear_bytes}, {"extra_bytes", w.owned_bytes},
                          {"derive_seconds", w.derive_seconds}, {"prefill_tokens_per_s", pre}, {"decode_tokens_per_s", dec},
                          {"anchor", r.e->anchor_name()}, {"threads", num_threads()},
                          {"int8_activations", kern.int8_acts}, {"kernels", kern.describe()}};
      const double bat = o->batch > 1 ? median(r.bat) : 0;
      if (o->batch > 1) {
        j["batch"] = o->batch;
        j["batch_step_ms"] = bat;
        j["batch_tokens_per_s"] = 1e3 * static_cast<double>(o->batch) / bat;
        if (o->rounds > 1) j["batch_step_ms_runs"] = r.bat;
      }
      if (o->rounds > 1) {
        j["rounds"] = o->rounds;
        j["decode_runs"] = r.dec;
        j["prefill_runs"] = r.pre;
      }
      runtime::Perplexity p;
      if (!text.empty()) {
        p = runtime::perplexity(*r.e, r.w, text, o->seq > 0 ? o->seq : c.max_seq, o->ppl_windows);
        j["loss"] = p.loss;
        j["perplexity"] = std::exp(p.loss);
        j["bits_per_byte"] = p.loss / std::log(2.0);
        j["ppl_bytes"] = p.bytes;
      }
      if (o->json) {
        fmt::print("{}\n", j.dump());
      } else {
        fmt::print("{:<12} {:>6.2f} {:>11} {:>10.3f} {:>12.0f} {:>11.1f}{}{}\n", r.name, w.bits_per_weight,
                   human_bytes(static_cast<double>(w.linear_bytes)), w.derive_seconds, pre, dec,
                   o->batch > 1 ? fmt::format(" {:>14.1f} {:>9.1f}", 1e3 * static_cast<double>(o->batch) / bat, bat) : "",
                   text.empty() ? "" : fmt::format(" {:>7.3f} {:>9.4f}", std::exp(p.loss), p.loss / std::log(2.0)));
      }
      std::fflush(stdout);
    };
    if (o->rounds == 1) {
      for (Row& r : rows) {  // one format resident at a time
        derive(r);
        measure(r);
        report(r);
        r.w.reset();
        r.e->evict(r.name);
      }
    } else {
      for (Row& r : rows) derive(r);
      for (std::int64_t k = 0; k < o->rounds; ++k) {
        for (Row& r : rows) measure(r);
      }
      for (Row& r : rows) report(r);
    }
    return 0;
  }};
}

}  // namespace mfqat::cli
