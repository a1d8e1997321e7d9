#include "batcher.h"

#include <algorithm>
#include <exception>
#include <map>

#include "mfqat/runtime/generate.h"
#include "mfqat/runtime/sampling.h"
#include "mfqat/runtime/session.h"

namespace mfqat::runtime {

namespace {

double since(std::chrono::steady_clock::time_point t0) { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }

}  // namespace

struct Batcher::Seq {
  std::shared_ptr<Job> job;
  std::unique_ptr<Session> session;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<TextStream> text;
  std::size_t fed = 0;  // prompt tokens read
  int next = 0;         // the token the next decode step reads
  std::string full;     // the generated text so far
  std::size_t sent = 0;  // bytes of it given to the handler
  std::chrono::steady_clock::time_point admitted, first, last;  // admission, first and latest token
  std::string format;  // the format of its next step
  std::map<std::string, std::int64_t> by_format;
  bool ended = false;
  bool prefilled() const { return fed == job->prompt_ids.size(); }
};

Batcher::Batcher(Engine& e, BatcherOptions o, std::function<void(const Job&)> on_done) : e_(e), o_(o), on_done_(std::move(on_done)) {
  prefill_budget_ = std::max<std::int64_t>(1, o_.prefill_chunk);
  thread_ = std::thread([this] { loop(); });
}

Batcher::~Batcher() { stop(); }

bool Batcher::submit(const std::shared_ptr<Job>& j) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_ || queue_.size() >= o_.queue_capacity) return false;
    queue_.push_back(j);
  }
  cv_.notify_all();
  return true;
}

void Batcher::pause(bool on) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    paused_ = on;
  }
  cv_.notify_all();
}

Batcher::Load Batcher::load() const {
  std::lock_guard<std::mutex> lk(mu_);
  return {queue_.size(), running_, reserved_, steps_, rows_, level_, level_changes_, prefill_budget_};
}

std::int64_t next_prefill_budget(std::int64_t budget, std::int64_t prefill, double step_ms, double slo_ms, std::int64_t lo, std::int64_t hi) {
  if (prefill > 0 && step_ms > slo_ms) {
    budget = std::min(budget, prefill) / 2;  // what it took, halved
  } else if (prefill >= budget && step_ms < 0.7 * slo_ms) {
    // Grown only by a step that used the whole budget and stayed fast: a step of decode rows
    // alone (or the last few tokens of a prompt) says nothing about a larger prompt piece, and
    // growing on those let a run of fast decode steps raise the budget to a full chunk, which
    // the next prompt then took in one step, over the target.
    budget += std::max<std::int64_t>(16, budget / 4);
  }
  return std::clamp(budget, lo, std::max(lo, hi));
}

std::string Batcher::auto_format() const {
  std::lock_guard<std::mutex> lk(mu_);
  return o_.auto_levels.empty() ? std::string() : o_.auto_levels[level_];
}

void Batcher::control(const std::vector<double>& gaps_ms, bool idle) {
  if (o_.slo_ms <= 0 || o_.auto_levels.size() < 2) return;
  const auto now = std::chrono::steady_clock::now();
  window_.insert(window_.end(), gaps_ms.begin(), gaps_ms.end());
  const double since_change = std::chrono::duration<double>(now - last_change_).count();
  std::lock_guard<std::mutex> lk(mu_);
  if (idle) {  // nothing runs: back to full precision once the last change has settled
    if (level_ != 0 && since_change >= o_.hold_s) {
      seen_.clear();  // the load that made them miss is gone
      level_ = 0;
      ++level_changes_;
      last_change_ = now;
    }
    window_.clear();
    window_start_ = now;
    return;
  }
  if (std::chrono::duration<double>(now - window_start_).count() < o_.window_s || window_.size() < 4) return;
  std::vector<double> w = window_;
  const auto k = static_cast<std::size_t>(0.9 * static_cast<double>(w.size() - 1));
  std::nth_element(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(k), w.end());
  const double p90 = w[k];
  seen_[level_] = {p90, now};
  bool up_ok = false;
  if (level_ > 0 && since_change >= o_.hold_s) {
    const auto it = seen_.find(level_ - 1);
    const bool fresh = it != seen_.end() && std::chrono::duration<double>(now - it->second.second).count() < o_.probe_s;
    up_ok = fresh ? it->second.first <= o_.slo_ms : p90 < o_.up_ratio * o_.slo_ms;
  }
  if (p90 > o_.slo_ms && level_ + 1 < o_.auto_levels.size()) {
    ++level_;
    ++level_changes_;
    last_change_ = now;
  } else if (up_ok) {
    --level_;
    ++level_changes_;
    last_change_ = now;
  }
  window_.clear();
  window_start_ = now;
}

void Batcher::stop() {
  std::deque<std::shared_ptr<Job>> failed;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
    paused_ = false;
    failed.swap(queue_);
  }
  cv_.notify_all();
  for (auto& j : failed) {
    {
      std::lock_guard<std::mutex> lk(j->mu);
      j->status = 503;
      j->error = "shutting down";
      j->done = true;
    }
    j->cv.notify_all();
    if (on_done_) on_done_(*j);
  }
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

// Ends a request: the held text flushed (up to a stop string), its reservation released by the
// caller when the Seq goes.
void Batcher::finish(Seq& s, int status, const std::string& error, const std::string& reason) {
  if (s.ended) return;
  s.ended = true;
  Job& j = *s.job;
  std::string tail;
  if (status == 200) {
    if (s.text) s.full += s.text->finish();
    const StopScan sc = scan_stop(s.full, j.req.stop);
    const std::size_t end = sc.stop != std::string::npos ? sc.stop : s.full.size();
    if (end > s.sent) tail = s.full.substr(s.sent, end - s.sent);
    s.sent = std::max(s.sent, end);
  }
  {
    std::lock_guard<std::mutex> lk(j.mu);
    j.pending += tail;
    j.tokens_by_format = s.by_format;
    if (!s.format.empty()) j.format = s.format;
    j.status = status;
    j.error = error;
    j.finish_reason = reason;
    j.first_token_s = s.first.time_since_epoch().count() ? std::chrono::duration<double>(s.first - s.admitted).count() : since(s.admitted);
    j.decode_s = s.first.time_since_epoch().count() ? since(s.first) : 0;
    j.done = true;
  }
  {
    // Not running any more before its client hears so: a request the client sends next must not
    // see this one in the load (an "auto" request would be served a lower precision).
    std::lock_guard<std::mutex> lk(mu_);
    if (running_ > 0) --running_;
  }
  j.cv.notify_all();
  if (on_done_) on_done_(j);
}

void Batcher::loop() {
  std::vector<std::unique_ptr<Seq>> running;
  std::size_t turn = 0;  // round robin over the formats being served
  const std::int64_t ubatch = std::max<std::int64_t>(1, e_.kernels().ubatch);
  for (;;) {
    if (running.empty()) control({}, true);  // idle (also: just woken from idle by a request)
    std::vector<std::shared_ptr<Job>> admitted;
    {
      std::unique_lock<std::mutex> lk(mu_);
      auto ready = [&] { return (stopping_ && queue_.empty() && running.empty()) || (!paused_ && (!queue_.empty() || !running.empty())); };
      if (level_ > 0) {  // idle below the first level: wake to step back up once the hold has passed
        if (!cv_.wait_for(lk, std::chrono::duration<double>(o_.hold_s / 2 + 0.01), ready)) continue;
      } else {
        cv_.wait(lk, ready);
      }
      if (stopping_ && queue_.empty() && running.empty()) return;
      // Admission in arrival order while the batch has room and the KV reservation fits; the
      // first that does not fit waits (and the ones behind it: no overtaking, no starvation).
      // requests that ended in the last step are released below: they no longer count
      const auto live = static_cast<std::size_t>(std::count_if(running.begin(), running.end(), [](const auto& s) { return !s->ended; }));
      while (!queue_.empty() && live + admitted.size() < o_.max_batch) {
        const std::uint64_t need = e_.kv_reserve_bytes(queue_.front()->capacity);
        if (reserved_ + need > o_.kv_budget) break;
        reserved_ += need;
        admitted.push_back(queue_.front());
        queue_.pop_front();
      }
      running_ = live + admitted.size();
    }
    for (auto& j : admitted) {
      auto s = std::make_unique<Seq>();
      s->job = j;
      s->admitted = std::chrono::steady_clock::now();
      j->queue_s = std::chrono::duration<double>(s->admitted - j->arrived).count();
      s->format = j->format;
      try {
        s->session = std::make_unique<Session>(e_, e_.weights(j->format), j->capacity);
        s->sampler = std::make_unique<Sampler>(j->req.sampling);
        s->text = std::make_unique<TextStream>(e_);
      } catch (const std::invalid_argument& ex) {
        finish(*s, 400, ex.what(), "");
      } catch (const std::exception& ex) {
        finish(*s, 500, ex.what(), "");
      }
      running.push_back(std::move(s));
    }
    for (auto& s : running) {
      if (!s->ended && s->job->cancelled.load()) finish(*s, 499, "client closed the connection", "");
    }
    // Finished requests leave: their caches go back, their reservations are released.
    auto release = [&] {
      std::uint64_t freed = 0;
      for (auto& s : running) {
        if (s->ended) freed += e_.kv_reserve_bytes(s->job->capacity);
      }
      running.erase(std::remove_if(running.begin(), running.end(), [](const auto& s) { return s->ended; }), running.end());
      std::lock_guard<std::mutex> lk(mu_);
      reserved_ -= freed;
      running_ = running.size();
    };
    release();
    if (running.empty()) {
      control({}, true);
      continue;
    }

    // "auto" under an SLO: every such request takes the policy's current format for this step
    // (its cache stays: elastic precision mid-stream), so they all share one step.
    if (o_.slo_ms > 0) {
      const std::string now_fmt = auto_format();
      for (auto& s : running) {
        if (!s->job->follow_auto || s->format == now_fmt) continue;
        try {
          s->session->set_weights(e_.weights(now_fmt));
          s->format = now_fmt;
          {
            std::lock_guard<std::mutex> lk(s->job->mu);
            s->job->format = now_fmt;
          }
        } catch (const std::exception& ex) {
          finish(*s, 500, ex.what(), "");
        }
      }
      release();
      if (running.empty()) continue;
    }
    // One format per step (a step's rows share its weights), the formats in turn.
    std::vector<std::string> formats;
    for (const auto& s : running) {
      if (std::find(formats.begin(), formats.end(), s->format) == formats.end()) formats.push_back(s->format);
    }
    const std::string& fmt = formats[turn++ % formats.size()];
    std::vector<Session::Piece> pieces;
    std::vector<Seq*> owners;
    std::int64_t rows = 0;
    for (auto& s : running) {
      if (s->format == fmt && s->prefilled() && rows < ubatch) {
        pieces.push_back({s->session.get(), &s->next, 1, true});
        owners.push_back(s.get());
        ++rows;
      }
    }
    // Prompt chunks after the decode rows, oldest first, at most prefill_chunk tokens a step;
    // under an SLO with decode rows in the step, at most the SLO's prefill budget.
    const std::int64_t decode_rows = rows;
    const bool slo_chunk = o_.slo_ms > 0 && decode_rows > 0;
    std::int64_t budget = std::min(ubatch - rows, std::max<std::int64_t>(1, slo_chunk ? prefill_budget_ : o_.prefill_chunk));
    for (auto& s : running) {
      if (budget <= 0) break;
      if (s->format != fmt || s->prefilled()) continue;
      const auto& ids = s->job->prompt_ids;
      const std::int64_t n = std::min<std::int64_t>(budget, static_cast<std::int64_t>(ids.size() - s->fed));
      pieces.push_back({s->session.get(), ids.data() + s->fed, n, s->fed + static_cast<std::size_t>(n) == ids.size()});
      owners.push_back(s.get());
      budget -= n;
      rows += n;
    }
    std::vector<std::vector<float>> out;
    std::vector<double> gaps;  // inter-token gaps of this step's tokens (ms)
    const auto t_step = std::chrono::steady_clock::now();
    try {
      Session::step(pieces, &out);
    } catch (const std::exception& ex) {
      for (Seq* s : owners) finish(*s, 500, ex.what(), "");
      release();
      continue;
    }
    {
      const double step_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_step).count();
      std::lock_guard<std::mutex> lk(mu_);
      ++steps_;
      rows_ += static_cast<std::uint64_t>(rows);
      if (slo_chunk) {
        prefill_budget_ = next_prefill_budget(prefill_budget_, rows - decode_rows, step_ms, o_.slo_ms, std::min(o_.min_prefill_chunk, o_.prefill_chunk),
                                              o_.prefill_chunk);
      }
    }
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      Seq& s = *owners[i];
      if (pieces[i].tokens != &s.next) {  // a chunk of the prompt
        s.fed += static_cast<std::size_t>(pieces[i].n);
        if (!pieces[i].logits) continue;  // not its last
      }
      const int id = s.sampler->sample(out[i]);
      const auto now = std::chrono::steady_clock::now();
      if (s.job->completion_tokens == 0) {
        s.first = now;
      } else {
        gaps.push_back(std::chrono::duration<double, std::milli>(now - s.last).count());
      }
      s.last = now;
      ++s.job->completion_tokens;
      ++s.by_format[s.format];
      const std::string piece = s.text->push(id);
      if (s.text->ended()) {
        finish(s, 200, "", "stop");
        continue;
      }
      s.full += piece;
      const StopScan sc = scan_stop(s.full, s.job->req.stop);
      if (sc.safe > s.sent) {
        {
          std::lock_guard<std::mutex> lk(s.job->mu);
          s.job->pending += s.full.substr(s.sent, sc.safe - s.sent);
          s.job->tokens_written = s.job->completion_tokens;
        }
        s.job->cv.notify_all();
        s.sent = sc.safe;
      }
      if (sc.stop != std::string::npos) {
        finish(s, 200, "", "stop");
      } else if (s.job->completion_tokens >= s.job->req.max_tokens || s.session->position() >= s.session->capacity()) {
        finish(s, 200, "", "length");
      } else {
        s.next = id;
      }
    }
    release();
    control(gaps, false);
  }
}

}  // namespace mfqat::runtime
