#include <fmt/core.h>
#include <fmt/format.h>

#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <filesystem>

#include "commands.h"
#include "kernel_flags.h"
#include "plan_flags.h"
#include "mfqat/runtime/server.h"
#include "util.h"

namespace mfqat::cli {

Command add_serve(CLI::App& app) {
  auto* sub = app.add_subcommand("serve",
                                 "Serve a model over an OpenAI-compatible HTTP API with continuous batching; the MX format is chosen per request (or by load: \"auto\")");
  struct Opts {
    KernelFlags kf;
    PlanFlags pf;
    std::int64_t ctx = 0;
    std::string model, host = "127.0.0.1", auto_formats, auto_depths, model_id;
    double kv_budget_mb = 0;
    int port = 8080;
    double cache_mb = 0;
    runtime::ServerOptions s;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("model", o->model, "anchor or fp32 master (.safetensors), or a Hugging Face model directory")->required();
  sub->add_option("--host", o->host, "address to listen on (default 127.0.0.1)");
  sub->add_option("--port", o->port, "port (default 8080; 0: any free port, printed)")->check(CLI::Range(0, 65535));
  sub->add_option("--max-batch", o->s.max_batch, "requests decoded together in one step (default 32; at most --ubatch)")->check(CLI::PositiveNumber);
  sub->add_option("--kv-budget", o->kv_budget_mb, "MB of KV cache for running requests; a request that does not fit waits (default: min(4096, max-batch full contexts))")
      ->check(CLI::PositiveNumber);
  sub->add_option("--prefill-chunk", o->s.prefill_chunk, "prompt tokens per batched step, at most (default 256)")->check(CLI::PositiveNumber);
  sub->add_option("--min-prefill-chunk", o->s.min_prefill_chunk,
                  "under --slo-ms, a step with decode rows takes an adaptive prompt budget that shrinks while steps miss the target, down to this (default 16)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--http-threads", o->s.http_threads, "connection threads: idle keep-alive connections hold one each (default 1024)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--model-id", o->model_id, "the model's name in /v1/models and in answers (default: the file or directory name)");
  sub->add_option("--queue", o->s.queue_capacity, "waiting requests before 503 (default 16)");
  sub->add_option("--max-tokens", o->s.max_tokens, "per-request limit (default 256)")->check(CLI::PositiveNumber);
  sub->add_option("--auto", o->auto_formats,
                  "\"auto\" levels (formats or budget:B / plan:NAME), highest precision first (default: the anchor, then the "
                  "--budget/--plan plans from the most bits down, or else the 4-bit format of its family)");
  sub->add_option("--auto-depths", o->auto_depths, "queue depths where \"auto\" drops a level (default 2)");
  sub->add_option("--slo-ms", o->s.slo_ms,
                  "inter-token latency target: \"auto\" requests then follow a level that steps down while the p90 gap exceeds it "
                  "and back up below half of it (default: off, the depth policy)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--cache-mb", o->cache_mb, "keep at most this many MB of derived weights (default: no limit)");
  sub->add_option("--ctx", o->ctx, "context in tokens: sizes the KV cache (default: the model's max_seq; Hugging Face models: min(max_position_embeddings, 4096))")
      ->check(CLI::PositiveNumber);
  add_kernel_flags(sub, o->kf);
  add_plan_flags(sub, o->pf, /*many=*/true);
  return {sub, [o]() {
    // SIGINT/SIGTERM end the server cleanly: blocked here, before any thread exists (threads
    // inherit the mask: the GEMV pool's start while the engine loads, the server's in start()),
    // so that no thread takes one with its default action (exit); the main thread waits for one
    // below. One that comes while the engine loads is taken once the server is up.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    // One descriptor per connection: the soft limit (1024 on Debian) would refuse connections
    // long before the thread pool or memory runs out; take the hard limit.
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
    o->s.auto_formats = split_list(o->auto_formats);
    for (const auto& d : split_list(o->auto_depths)) o->s.auto_depths.push_back(static_cast<std::size_t>(std::stoul(d)));
    auto e = runtime::Engine::open(o->model, o->ctx);
    e->set_kernels(kernel_options(o->kf));
    if (o->cache_mb > 0) e->set_cache_budget(static_cast<std::uint64_t>(o->cache_mb * 1e6));
    auto plans = load_plans(*e, o->pf);
    for (const auto& p : plans) fmt::print("mfqat serve: {} = {:.3f} bits/weight ({})\n", p.name, p.bits, p.mix);
    if (o->s.auto_formats.empty() && !plans.empty()) {
      std::stable_sort(plans.begin(), plans.end(), [](const LoadedPlan& a, const LoadedPlan& b) { return a.bits > b.bits; });
      o->s.auto_formats.push_back("anchor");
      for (const auto& p : plans) o->s.auto_formats.push_back(p.name);
    }
    e->weights("anchor");  // the anchor's own format is ready before the first request
    if (o->kv_budget_mb > 0) o->s.kv_budget = static_cast<std::uint64_t>(o->kv_budget_mb * 1e6);
    o->s.model_id = !o->model_id.empty() ? o->model_id : std::filesystem::path(o->model).filename().replace_extension().string();
    if (o->s.model_id.empty()) o->s.model_id = std::filesystem::path(o->model).parent_path().filename().string();
    runtime::Server server(*e, o->s);
    const int port = server.start(o->host, o->port);
    fmt::print("mfqat serve: {} as model \"{}\" ({} anchor) on http://{}:{}/v1  (auto: {}; batch {}, KV budget {} MB)\n", o->model,
               server.options().model_id, e->anchor_name(), o->host, port, fmt::format("{}", fmt::join(server.options().auto_formats, " > ")),
               server.options().max_batch, server.options().kv_budget / 1000000);
    std::fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    fmt::print("mfqat serve: signal {}, stopping (waiting requests get 503; a second signal exits at once)\n", sig);
    std::fflush(stdout);
    // A second signal takes its default action (exit) on this thread, the only one that does
    // not block it, should the running generations take too long.
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    server.stop();
    fmt::print("mfqat serve: stopped\n");
    return 0;
  }};
}

}  // namespace mfqat::cli
