#include <fmt/core.h>
#include <fmt/format.h>

#include <csignal>
#include <sstream>

#include "commands.h"
#include "mfqat/runtime/server.h"

namespace mfqat::cli {

Command add_serve(CLI::App& app) {
  auto* sub = app.add_subcommand("serve", "Serve an anchor over HTTP JSON; the format is chosen per request (or by load: \"auto\")");
  struct Opts {
    bool int8_act = false;
    std::string model, host = "127.0.0.1", auto_formats, auto_depths;
    int port = 8080;
    double cache_mb = 0;
    runtime::ServerOptions s;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("model", o->model, "anchor or fp32 master (.safetensors)")->required();
  sub->add_option("--host", o->host, "address to listen on (default 127.0.0.1)");
  sub->add_option("--port", o->port, "port (default 8080; 0: any free port, printed)")->check(CLI::Range(0, 65535));
  sub->add_option("--workers", o->s.workers, "concurrent generations (default 1)")->check(CLI::PositiveNumber);
  sub->add_option("--queue", o->s.queue_capacity, "waiting requests before 503 (default 16)");
  sub->add_option("--max-tokens", o->s.max_tokens, "per-request limit (default 256)")->check(CLI::PositiveNumber);
  sub->add_option("--auto", o->auto_formats, "\"auto\" levels, highest precision first (default: the anchor, then the 4-bit format of its family)");
  sub->add_option("--auto-depths", o->auto_depths, "queue depths where \"auto\" drops a level (default 2)");
  sub->add_option("--cache-mb", o->cache_mb, "keep at most this many MB of derived weights (default: no limit)");
  sub->add_flag("--int8-act", o->int8_act, "decode with int8 activations where the format allows (MXINT8, 4-bit): faster, not bit-faithful to training");
  return {sub, [o]() {
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
    auto e = runtime::Engine::open(o->model);
    e->set_int8_activations(o->int8_act);
    if (o->cache_mb > 0) e->set_cache_budget(static_cast<std::uint64_t>(o->cache_mb * 1e6));
    e->weights("anchor");  // the anchor's own format is ready before the first request
    // SIGINT/SIGTERM end the server cleanly: block them here, wait for one below.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    runtime::Server server(*e, o->s);
    const int port = server.start(o->host, o->port);
    fmt::print("mfqat serve: {} ({} anchor) on http://{}:{}  (auto: {})\n", o->model, e->anchor_name(), o->host, port,
               fmt::format("{}", fmt::join(server.options().auto_formats, " > ")));
    std::fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    fmt::print("mfqat serve: signal {}, stopping\n", sig);
    server.stop();
    return 0;
  }};
}

}  // namespace mfqat::cli
