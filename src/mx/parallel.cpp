#include "mfqat/mx/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace mfqat {
namespace {

int default_threads() {
  if (const char* s = std::getenv("MFQAT_NUM_THREADS")) {
    const int n = std::atoi(s);
    if (n > 0) return std::min(n, kMaxThreads);
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc ? std::min(static_cast<int>(hc), kMaxThreads) : 1;
}

std::atomic<int> g_threads{0};

// The pool's protocol
// -------------------
// One parallel region at a time (call_mu_). A region of generation g with P parts is published
// as ONE atomic word, `claim_` = g << 32 | P << 16 | next, after the caller has stored the job
// pointer `job_`, reset `done_` and cleared `error_` (a seq_cst store, so a release of those).
//
//  * A part is claimed by compare-and-swap on `claim_` that increments `next`, and only while
//    the word still carries the claimer's generation and next < P. Generation and part count are
//    read from the same word the claim succeeds on, so a claim can never count against another
//    region's part count.
//  * The job pointer is read only AFTER a successful claim. The caller of region g does not
//    return (and so neither frees the job nor starts g + 1 and rewrites `job_`) before `done_`
//    reaches P, and the claimed part is not done yet; the acquiring CAS reads a value in the
//    release sequence headed by the caller's publishing store, so `job_` is g's job.
//  * Each finished part adds one to `done_` (seq_cst RMW, a release of the part's writes); the
//    caller waits for done_ == P with acquire loads. Parts of g can no longer be claimed once
//    next == P, so every increment of `done_` between the reset for g and the caller's return
//    belongs to g.
//  * A part that throws is caught on its thread, the first exception is kept (err_mu_) and
//    rethrown by the caller after all parts are done; the part still counts as done.
//  * Hot path without locks (decode runs ~130 regions per token, and a locked hand-off costs
//    several times a lock-free one: docs/perf.md). Workers and the caller spin for up to 200 us and
//    then sleep on a mutex + condition variable. Lost wake-ups are excluded Dekker-style with
//    sequentially consistent atomics: a worker increments `sleepers_` and then re-checks
//    `claim_` (under mu_), the caller stores `claim_` and then reads `sleepers_` (notifying
//    under mu_); a finishing part increments `done_` and then reads `caller_waiting_`, the
//    caller sets `caller_waiting_` and then re-checks `done_` (under mu_).
class Pool {
 public:
  static Pool& get() {
    static Pool pool;
    return pool;
  }
  void run(int parts, const std::function<void(int)>& job) {
    std::lock_guard<std::mutex> call_lock(call_mu_);  // one parallel region at a time
    ensure_workers(std::min(parts, num_threads()) - 1);
    job_.store(&job, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    const std::uint64_t gen = ++generation_ & 0xffffffffu;
    claim_.store(gen << 32 | static_cast<std::uint64_t>(parts) << 16);  // publishes the region
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lk(mu_);
      cv_.notify_all();
    }
    work(gen);  // the calling thread takes parts too
    // The other parts are usually a few microseconds from done: spin briefly before sleeping
    // (a futex wake-up costs tens of microseconds on a VM, as much as a whole decode GEMV part).
    if (!spin_until([&] { return done_.load(std::memory_order_acquire) == parts; })) {
      std::unique_lock<std::mutex> lk(mu_);
      caller_waiting_.store(true);
      done_cv_.wait(lk, [&] { return done_.load() == parts; });
      caller_waiting_.store(false);
    }
    job_.store(nullptr, std::memory_order_relaxed);
    if (error_) {
      std::exception_ptr e = error_;
      error_ = nullptr;
      std::rethrow_exception(e);
    }
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_.store(true);
      cv_.notify_all();
    }
    for (auto& t : workers_) t.join();
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

 private:
  Pool() = default;
  void ensure_workers(int n) {
    while (static_cast<int>(workers_.size()) < n) {
      workers_.emplace_back([this] {
        std::uint64_t seen = claim_.load() >> 32;  // regions published before this worker existed are done
        for (;;) {
          std::uint64_t w = 0;
          auto fresh = [&] {
            w = claim_.load();
            return (w >> 32) != seen || stop_.load();
          };
          // Back-to-back regions (decode: one GEMV after another) find the worker awake.
          if (!spin_until(fresh)) {
            std::unique_lock<std::mutex> lk(mu_);
            sleepers_.fetch_add(1);
            cv_.wait(lk, fresh);
            sleepers_.fetch_sub(1);
          }
          if (stop_.load()) return;
          seen = w >> 32;
          work(seen);  // a region already finished (or a newer one) makes every claim fail
        }
      });
    }
  }
  // Polls `ready` for up to kSpin; returns whether it became true.
  template <class Ready>
  static bool spin_until(Ready ready) {
    constexpr auto kSpin = std::chrono::microseconds(200);
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; !ready(); ++i) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      if ((i & 63) == 63 && std::chrono::steady_clock::now() - start > kSpin) return ready();
    }
    return true;
  }
  // Claims the next part of generation `gen`: its index and the region's part count, or -1 when
  // none is left or another region is published.
  int claim(std::uint64_t gen, int* parts) {
    std::uint64_t w = claim_.load(std::memory_order_acquire);
    for (;;) {
      const auto next = static_cast<int>(w & 0xffffu);
      const auto p = static_cast<int>((w >> 16) & 0xffffu);
      if ((w >> 32) != gen || next >= p) return -1;
      if (claim_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
        *parts = p;
        return next;
      }
    }
  }
  // Claims and runs parts of `gen` until none is left.
  void work(std::uint64_t gen) {
    int parts = 0;
    for (int i; (i = claim(gen, &parts)) >= 0;) {
      const std::function<void(int)>* job = job_.load(std::memory_order_relaxed);  // g's: see the protocol
      try {
        (*job)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lk(err_mu_);
        if (!error_) error_ = std::current_exception();
      }
      if (done_.fetch_add(1) + 1 == parts && caller_waiting_.load()) {
        std::lock_guard<std::mutex> lk(mu_);
        done_cv_.notify_all();
      }
    }
  }

  std::mutex call_mu_, mu_, err_mu_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;  // under call_mu_
  std::uint64_t generation_ = 0;      // the caller's count (under call_mu_)
  std::atomic<std::uint64_t> claim_{0};  // generation << 32 | parts << 16 | next part
  std::atomic<const std::function<void(int)>*> job_{nullptr};
  std::atomic<int> done_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_waiting_{false};
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;  // under err_mu_ while parts run; read by the caller after they are done
};

thread_local bool t_inside_pool = false;

// Marks this thread as running a part (nested parallel_for runs inline) until the scope ends,
// by return or by exception, and restores what was there before.
class InsidePool {
 public:
  InsidePool() : was_(t_inside_pool) { t_inside_pool = true; }
  ~InsidePool() { t_inside_pool = was_; }
  InsidePool(const InsidePool&) = delete;
  InsidePool& operator=(const InsidePool&) = delete;

 private:
  bool was_;
};

}  // namespace

int num_threads() {
  int n = g_threads.load();
  if (n == 0) {
    n = default_threads();
    g_threads.store(n);
  }
  return n;
}

void set_num_threads(int n) { g_threads.store(std::clamp(n, 1, kMaxThreads)); }

bool inside_parallel_region() { return t_inside_pool; }

void parallel_for(std::int64_t n, std::int64_t grain, const std::function<void(std::int64_t, std::int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<std::int64_t>(1, grain);
  const std::int64_t units = (n + grain - 1) / grain;
  const int parts = static_cast<int>(std::min<std::int64_t>(units, num_threads()));
  if (parts <= 1 || t_inside_pool) {
    fn(0, n);
    return;
  }
  // Part i takes units [i * units / parts, (i + 1) * units / parts): every part non-empty, sizes
  // differing by at most one unit.
  Pool::get().run(parts, [&](int i) {
    const std::int64_t b = std::min(n, i * units / parts * grain);
    const std::int64_t e = std::min(n, (i + 1) * units / parts * grain);
    if (b >= e) return;
    InsidePool inside;
    fn(b, e);
  });
}

}  // namespace mfqat
