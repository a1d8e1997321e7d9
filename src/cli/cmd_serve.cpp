#include <fmt/core.h>
#include <fmt/format.h>

#include <csignal>
#include <sstream>

#include "commands.h"
#include "kernel_flags.h"
#include "mfqat/runtime/server.h"

namespace mfqat::cli {

Command add_serve(CLI::App& app) {
  auto* sub = app.add_subcommand("serve", "Serve an anchor over HTTP JSON; the format is chosen per request (or by load: \"auto\")");
  struct Opts {
    KernelFlags kf;
    std::int64_t ctx = 0;
    std::string model, host = "127.0.0.1", auto_formats, auto_depths;
    int port = 8080;
    double cache_mb = 0;
    runtime::ServerOptions s;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("model", o->model, "anchor or fp32 master (.safetensors), or a Hugging Face model directory")->required();
  sub->add_option("--host", o->host, "address to listen on (default 127.0.0.1)");
  sub->add_option("--port", o->port, "port (default 8080; 0: any free port, printed)")->check(CLI::Range(0, 65535));
  sub->add_option("--workers", o->s.workers, "concurrent generations (default 1)")->check(CLI::PositiveNumber);
  sub->add_option("--queue", o->s.queue_capacity, "waiting requests before 503 (default 16)");
  sub->add_option("--max-tokens", o->s.max_tokens, "per-request limit (default 256)")->check(CLI::PositiveNumber);
  sub->add_option("--auto", o->auto_formats, "\"auto\" levels, highest precision first (default: the anchor, then the 4-bit format of its family)");
  sub->add_option("--auto-depths", o->auto_depths, "queue depths where \"auto\" drops a level (default 2)");
  sub->add_option("--cache-mb", o->cache_mb, "keep at most this many MB of derived weights (default: no limit)");
  sub->add_option("--ctx", o->ctx, "context in tokens: sizes the KV cache (default: the model's max_seq; Hugging Face models: min(max_position_embeddings, 4096))")
      ->check(CLI::PositiveNumber);
  add_kernel_flags(sub, o->kf);
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
    auto split = [](const std::string& s) {
      std::vector<std::string> out;
      std::stringstream ss(s);
      for (std::string item; std::getline(ss, item, ',');) {
        if (!item.empty()) out.push_back(item);
      }
      return out;
    };
    o->s.auto_formats = split(o->auto_formats);
    for (const auto& d : split(o->auto_depths)) o->s.auto_depths.push_back(static_cast<std::size_t>(std::stoul(d)));
    auto e = runtime::Engine::open(o->model, o->ctx);
    e->set_kernels(kernel_options(o->kf));
    if (o->cache_mb > 0) e->set_cache_budget(static_cast<std::uint64_t>(o->cache_mb * 1e6));
    e->weights("anchor");  // the anchor's own format is ready before the first request
    runtime::Server server(*e, o->s);
    const int port = server.start(o->host, o->port);
    fmt::print("mfqat serve: {} ({} anchor) on http://{}:{}  (auto: {})\n", o->model, e->anchor_name(), o->host, port,
               fmt::format("{}", fmt::join(server.options().auto_formats, " > ")));
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
