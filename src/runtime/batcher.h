// Continuous batching for the server (private to the runtime): one scheduler thread advances
// every running request of one format by one Session::step per iteration: the decode token of
// each request that has its prompt read, plus a chunk of the next prompts, so that a long prompt
// does not stall the others. New requests join between steps while their KV reservation fits the
// budget; finished and abandoned ones leave.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mfqat/runtime/engine.h"
#include "mfqat/runtime/openai_api.h"

namespace mfqat::runtime {

// One request, shared by its HTTP handler and the scheduler.
struct Job {
  CompletionRequest req;
  std::vector<int> prompt_ids;
  std::int64_t capacity = 0;  // KV positions reserved for it
  std::string format;         // canonical; resolved before it is queued, then the format now serving it (under mu)
  bool follow_auto = false;   // "auto" under an SLO: each step in the policy's current format
  std::chrono::steady_clock::time_point arrived = std::chrono::steady_clock::now();
  std::atomic<bool> cancelled{false};  // the client went away

  // Output, under mu: text not yet taken by the handler, and the end.
  std::mutex mu;
  std::condition_variable cv;
  std::string pending;
  std::int64_t tokens_written = 0;  // completion tokens behind the text given out so far
  bool done = false;
  int status = 200;
  std::string error, finish_reason;
  std::int64_t completion_tokens = 0;
  std::map<std::string, std::int64_t> tokens_by_format;  // the formats that wrote its tokens
  double queue_s = 0, first_token_s = 0, decode_s = 0;  // waiting; admission to first token; the rest
};

struct BatcherOptions {
  std::size_t max_batch = 32;       // running requests (decode rows per step)
  std::size_t queue_capacity = 16;  // waiting requests; more: submit() refuses
  std::uint64_t kv_budget = 0;      // bytes of KV cache reserved by running requests
  std::int64_t prefill_chunk = 256;  // prompt tokens per step, at most
  // The SLO policy for "auto" (slo_ms > 0): levels from the highest precision down. Every
  // window_s, the p90 of the inter-token gaps of that window is compared with the target: above
  // it, one level down (at most once a window); one level up once hold_s has passed since the
  // last change if the level above last met the target at its own p90 (or that was more than
  // probe_s ago and this level's p90 is below up_ratio of the target); idle for hold_s, back to
  // the first level.
  double slo_ms = 0;
  std::vector<std::string> auto_levels;
  double window_s = 0.5, hold_s = 3.0, up_ratio = 0.5, probe_s = 30.0;
  // Under an SLO, a step that carries decode rows takes at most prefill_budget() prompt tokens
  // (between min_prefill_chunk and prefill_chunk), so that prompts do not stretch the gaps of
  // the requests already decoding; a step with no decode rows takes a full chunk.
  std::int64_t min_prefill_chunk = 16;
};

// The SLO prefill budget after a step that carried decode rows and `prefill` prompt tokens and
// took step_ms: halved when the step missed the target (a prompt made everyone's gap too long),
// grown by a quarter (at least 16) when it used the whole budget and took under 70 % of it,
// else kept; within [lo, hi].
std::int64_t next_prefill_budget(std::int64_t budget, std::int64_t prefill, double step_ms, double slo_ms, std::int64_t lo, std::int64_t hi);

class Batcher {
 public:
  Batcher(Engine& e, BatcherOptions o, std::function<void(const Job&)> on_done);
  ~Batcher();
  // Queues a job; false (and nothing queued) when the queue is full or the batcher stops.
  bool submit(const std::shared_ptr<Job>& j);
  // Fails the queued jobs (503 "shutting down") at once, lets the running ones finish, joins.
  void stop();
  void pause(bool on);  // testing: no step runs while paused
  struct Load {
    std::size_t queued = 0, running = 0;
    std::uint64_t kv_reserved = 0;
    std::uint64_t steps = 0, rows = 0;
    std::size_t auto_level = 0;
    std::uint64_t level_changes = 0;
    std::int64_t prefill_budget = 0;  // prompt tokens a step with decode rows may take now
  };
  Load load() const;
  // The SLO policy's format now (auto_levels[level]).
  std::string auto_format() const;

 private:
  struct Seq;
  void loop();
  void finish(Seq& s, int status, const std::string& error, const std::string& reason);
  Engine& e_;
  BatcherOptions o_;
  std::function<void(const Job&)> on_done_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::size_t running_ = 0;
  std::uint64_t reserved_ = 0, steps_ = 0, rows_ = 0;
  std::size_t level_ = 0;  // the SLO policy's level
  std::uint64_t level_changes_ = 0;
  std::int64_t prefill_budget_ = 0;  // under mu_ (written by the scheduler thread)
  void control(const std::vector<double>& gaps_ms, bool idle);  // the SLO policy (scheduler thread)
  std::vector<double> window_;
  // the p90 gap last measured at each level, and when: a level whose last p90 missed the target
  // is not tried again until that memory is older than probe_s (no flapping between two levels)
  std::map<std::size_t, std::pair<double, std::chrono::steady_clock::time_point>> seen_;
  std::chrono::steady_clock::time_point window_start_ = std::chrono::steady_clock::now(), last_change_ = window_start_;
  bool stopping_ = false, paused_ = false;
  std::thread thread_;
};

}  // namespace mfqat::runtime
