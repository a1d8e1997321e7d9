// HTTP JSON serving of one engine (cpp-httplib): POST /v1/completions, GET /v1/formats,
// GET /health, GET /metrics (Prometheus text). Requests go through a bounded queue to a fixed
// number of generation workers; a full queue answers 503. format "auto" picks the precision
// from the queue depth (docs/perf.md, "Elastic serving policy").
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mfqat/runtime/engine.h"

namespace mfqat::runtime {

struct ServerOptions {
  int workers = 1;                  // concurrent generations (each uses the GEMV thread pool)
  std::size_t queue_capacity = 16;  // waiting requests beyond the workers; more -> 503
  std::int64_t max_tokens = 256;    // per request
  std::int64_t max_prompt_bytes = 0;  // 0: max_seq - 1
  std::size_t max_body_bytes = 1 << 20;
  // "auto": level i of auto_formats serves while queue depth < auto_depths[i] (the last level
  // takes the rest). Default: the anchor below depth 2, the 4-bit format of its family above.
  std::vector<std::string> auto_formats;
  std::vector<std::size_t> auto_depths;
};

// A checked POST /v1/completions body.
struct CompletionRequest {
  std::string prompt, format = "anchor";
  std::int64_t max_tokens = 64;
  SamplingOptions sampling;
};
// Parses and checks a completion request body (any bytes: it is the fuzzed entry point).
// Throws std::invalid_argument with a one-line reason on malformed JSON, unknown fields, wrong
// types or values out of range. `canonical` maps a format name to the engine's name for it and
// throws naming an unknown one; "auto" is kept as is.
CompletionRequest parse_completion_request(const std::string& body, std::int64_t max_prompt_bytes, std::int64_t max_tokens,
                                           const std::function<std::string(const std::string&)>& canonical);

class Server {
 public:
  Server(Engine& engine, ServerOptions opt);
  ~Server();
  // Binds (port 0: any free port) and serves on background threads; returns the bound port.
  int start(const std::string& host, int port);
  // Stops serving and joins every thread it started: queued requests are answered 503 ("shutting
  // down") at once, running generations finish and are answered, new connections are refused.
  // Returns once the running generations end (and idle keep-alive connections time out, up to
  // httplib's 5 s). Idempotent; safe from any thread, concurrently, and from the destructor.
  void stop();
  // Blocks until stop() has finished or the HTTP server ended by itself (for the CLI). Does not
  // join anything: call stop() (or destroy the server) afterwards.
  void wait();
  // Testing: hold the workers (queued requests wait) / let them run.
  void pause(bool on);
  const ServerOptions& options() const;
  std::string auto_format(std::size_t depth) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mfqat::runtime
