// HTTP serving of one engine (cpp-httplib), OpenAI-compatible: POST /v1/completions and
// /v1/chat/completions (optionally streamed as server-sent events), GET /v1/models, and mfqat's
// GET /v1/formats, /health, /metrics (Prometheus text). Requests are served by continuous
// batching (batcher.h): every running request of a format advances in one step, new ones join
// between steps while their KV reservation fits --kv-budget; a full queue answers 503. format
// "auto" picks the precision from the load (docs/runtime.md, "Elastic serving policy").
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mfqat/runtime/engine.h"
#include "mfqat/runtime/openai_api.h"

namespace mfqat::runtime {

struct ServerOptions {
  std::size_t max_batch = 32;       // requests running at once (decode rows of a step)
  std::size_t queue_capacity = 16;  // waiting requests beyond those; more -> 503
  std::uint64_t kv_budget = 0;      // bytes of KV cache for running requests (0: min(4 GiB, max_batch full contexts))
  std::int64_t prefill_chunk = 256;  // prompt tokens per step, at most
  // Under slo_ms: the floor of the adaptive prompt budget of a step that has decode rows.
  std::int64_t min_prefill_chunk = 16;
  std::int64_t max_tokens = 256;    // per request
  std::int64_t max_prompt_bytes = 0;  // 0: 64 x max_seq
  std::size_t max_body_bytes = 1 << 20;
  // HTTP connection threads (cpp-httplib: one per open connection, idle keep-alive ones included,
  // until its read timeout of 5 s). Connections beyond them wait in line, so idle clients could
  // starve the others: many threads cost little (their stacks are mostly unused).
  std::size_t http_threads = 1024;
  std::string model_id = "mfqat";  // the model's name in /v1/models and in answers
  // "auto": level i of auto_formats serves while the load (waiting + running requests) is below
  // auto_depths[i] (the last level takes the rest). Default: the anchor below 2, the 4-bit format
  // of its family above. The server derives every level when it starts (a step down under load
  // must not wait for a derivation), which the engine's cache then holds.
  std::vector<std::string> auto_formats;
  std::vector<std::size_t> auto_depths;
  // slo_ms > 0: "auto" follows a latency target instead of the depths. Every running "auto"
  // request takes the policy's current level at every step (the format can change mid-stream);
  // the level steps down while the p90 inter-token gap of the last window exceeds slo_ms, and
  // back up, one level at a time, after slo_hold_s, unless the level above missed the target
  // in the last 30 s (no flapping; the rule in batcher.h).
  double slo_ms = 0;
  double slo_hold_s = 3.0;
  double slo_window_s = 0.5;  // how often the policy looks at the gaps
};

class Server {
 public:
  Server(Engine& engine, ServerOptions opt);
  ~Server();
  // Binds (port 0: any free port) and serves on background threads; returns the bound port.
  int start(const std::string& host, int port);
  // Stops serving and joins every thread it started: queued requests are answered 503 ("shutting
  // down") at once, running generations finish (at most max_tokens more steps) and are answered,
  // new requests get 503. Returns once the running generations end (and idle keep-alive
  // connections time out, up to httplib's 5 s). Idempotent; safe from any thread, concurrently,
  // and from the destructor.
  void stop();
  // Blocks until stop() has finished or the HTTP server ended by itself (for the CLI). Does not
  // join anything: call stop() (or destroy the server) afterwards.
  void wait();
  // Testing: hold the scheduler (queued and running requests wait) / let it run.
  void pause(bool on);
  const ServerOptions& options() const;
  std::string auto_format(std::size_t depth) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mfqat::runtime
