#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "kernel_flags.h"
#include "plan_flags.h"
#include "mfqat/runtime/engine.h"

namespace mfqat::cli {

Command add_generate(CLI::App& app) {
  auto* sub = app.add_subcommand("generate", "Generate text from an anchor (or master) at a format chosen now");
  struct Opts {
    KernelFlags kf;
    PlanFlags pf;
    std::int64_t ctx = 0;
    std::string model, format = "anchor", prompt;
    std::int64_t n = 200;
    runtime::SamplingOptions s;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("model", o->model, "anchor or fp32 master (.safetensors), or a Hugging Face model directory")->required();
  auto* format = sub->add_option("-f,--format", o->format, "format to run (derived from the anchor by Slice-and-Scale), anchor, or fp32");
  add_plan_flags(sub, o->pf, /*many=*/false);
  format->excludes(sub->get_option("--plan"))->excludes(sub->get_option("--budget"));
  sub->get_option("--plan")->excludes(sub->get_option("--budget"));
  sub->add_option("-p,--prompt", o->prompt, "prompt text (bytes)");
  sub->add_option("-n,--tokens", o->n, "tokens to generate (bytes for mfqat's byte LM)")->check(CLI::NonNegativeNumber);
  sub->add_option("--temperature", o->s.temperature, "0: greedy (default)")->check(CLI::NonNegativeNumber);
  sub->add_option("--top-k", o->s.top_k, "keep the k most likely bytes (0: off)")->check(CLI::NonNegativeNumber);
  sub->add_option("--top-p", o->s.top_p, "nucleus sampling mass (1: off)")->check(CLI::Range(0.0, 1.0));
  sub->add_option("--seed", o->s.seed, "sampling seed");
  sub->add_flag("--json", o->json, "machine-readable output");
  sub->add_option("--ctx", o->ctx, "context in tokens: sizes the KV cache (default: the model's max_seq; Hugging Face models: min(max_position_embeddings, 4096))")
      ->check(CLI::PositiveNumber);
  add_kernel_flags(sub, o->kf);
  return {sub, [o]() {
    auto e = runtime::Engine::open(o->model, o->ctx);
    e->set_kernels(kernel_options(o->kf));
    const auto plans = load_plans(*e, o->pf);
    const auto w = e->weights(plans.empty() ? o->format : plans[0].name);
    const auto g = runtime::generate(*e, w, o->prompt, o->n, o->s);
    const double pre = g.prefill_seconds > 0 ? static_cast<double>(g.prompt_tokens) / g.prefill_seconds : 0;
    const double dec = g.decode_seconds > 0 ? static_cast<double>(g.new_tokens) / g.decode_seconds : 0;
    if (o->json) {
      fmt::print("{}\n", nlohmann::json{{"format", w->format},
                                        {"prompt", o->prompt},
                                        {"text", g.text},
                                        {"prompt_tokens", g.prompt_tokens},
                                        {"new_tokens", g.new_tokens},
                                        {"prefill_tokens_per_s", pre},
                                        {"decode_tokens_per_s", dec},
                                        {"kernels", e->kernels().describe()},
                                        {"prompt_ids", g.prompt_ids},
                                        {"token_ids", g.token_ids}}
                             .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    } else {
      fmt::print("{}{}\n", o->prompt, g.text);
      fmt::print(stderr, "[{}: {} prompt tokens at {:.0f} tok/s, {} new at {:.1f} tok/s]\n", w->format, g.prompt_tokens, pre, g.new_tokens, dec);
    }
    return 0;
  }};
}

}  // namespace mfqat::cli
