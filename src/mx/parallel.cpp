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
    if (n > 0) return n;
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc ? static_cast<int>(hc) : 1;
}

std::atomic<int> g_threads{0};

// Workers wait for a job generation; each job is split into `parts` chunks claimed by index.
// The hot path takes no lock: decode runs ~130 parallel regions per token, and the mutex
// hand-offs of a locked pool cost ~2.7 us per region on this VM (an empty region), ~2 % of a
// 4-bit decode token. `claim_` holds the generation in its high 32 bits and the next unclaimed
// part in its low 32: a part is claimed by compare-and-swap only while the word still carries
// the claimer's generation, so a worker that wakes late can never take a part of a newer job.
// While a part of generation g is claimed and unfinished the caller cannot start g + 1, so the
// job and part count a claimer reads are g's. Sleeping (after a 200 us spin) goes through a
// mutex and condition variables, each side announcing itself before re-checking (Dekker-style
// with sequentially consistent atomics), so no wake-up is lost.
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
    parts_.store(parts, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    const std::uint64_t gen = ++generation_ & 0xffffffffu;
    claim_.store(gen << 32);  // publishes the job (seq_cst, so also a release)
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lk(mu_);
      cv_.notify_all();
    }
    work(gen, &job, parts);  // the calling thread takes parts too
    // The other parts are usually a few microseconds from done: spin briefly before sleeping
    // (a futex wake-up costs tens of microseconds on a VM, as much as a whole decode GEMV part).
    if (!spin_until([&] { return done_.load(std::memory_order_acquire) == parts; })) {
      std::unique_lock<std::mutex> lk(mu_);
      caller_waiting_.store(true);
      done_cv_.wait(lk, [&] { return done_.load() == parts; });
      caller_waiting_.store(false);
    }
    job_.store(nullptr, std::memory_order_relaxed);
    if (error_) std::rethrow_exception(error_);
  }
  ~Pool() {
    stop_.store(true);
    {
      std::lock_guard<std::mutex> lk(mu_);
      cv_.notify_all();
    }
    for (auto& t : workers_) t.join();
  }

 private:
  void ensure_workers(int n) {
    while (static_cast<int>(workers_.size()) < n) {
      workers_.emplace_back([this] {
        std::uint64_t seen = claim_.load() >> 32;  // jobs published before this worker existed are done
        for (;;) {
          std::uint64_t w = 0;
          auto fresh = [&] {
            w = claim_.load();
            return (w >> 32) != seen || stop_.load();
          };
          // Back-to-back jobs (decode: one GEMV after another) find the worker awake.
          if (!spin_until(fresh)) {
            std::unique_lock<std::mutex> lk(mu_);
            sleepers_.fetch_add(1);
            cv_.wait(lk, fresh);
            sleepers_.fetch_sub(1);
          }
          if (stop_.load()) return;
          seen = w >> 32;
          // (the job may already be done and the pointer null or newer: then no claim succeeds)
          work(seen, job_.load(std::memory_order_relaxed), parts_.load(std::memory_order_relaxed));
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
  // The next part of generation `gen`, or -1 when none is left or a newer job has started.
  int claim(std::uint64_t gen, int parts) {
    std::uint64_t w = claim_.load(std::memory_order_acquire);
    for (;;) {
      const auto i = static_cast<int>(w & 0xffffffffu);
      if ((w >> 32) != gen || i >= parts) return -1;
      if (claim_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire)) return i;
    }
  }
  // Claims parts of `gen` until none is left. `job` is only called for a claimed part (while
  // one is claimed, the job it was read for is still the current one).
  void work(std::uint64_t gen, const std::function<void(int)>* job, int parts) {
    for (int i; (i = claim(gen, parts)) >= 0;) {
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
  std::vector<std::thread> workers_;
  std::uint64_t generation_ = 0;  // the caller's count (under call_mu_)
  std::atomic<std::uint64_t> claim_{0};  // generation << 32 | next part
  std::atomic<const std::function<void(int)>*> job_{nullptr};
  std::atomic<int> parts_{0};
  std::atomic<int> done_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_waiting_{false};
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;  // under err_mu_ while parts run; read by the caller after they are done
};

thread_local bool t_inside_pool = false;

}  // namespace

int num_threads() {
  int n = g_threads.load();
  if (n == 0) {
    n = default_threads();
    g_threads.store(n);
  }
  return n;
}

void set_num_threads(int n) { g_threads.store(std::max(1, n)); }

void parallel_for(std::int64_t n, std::int64_t grain, const std::function<void(std::int64_t, std::int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<std::int64_t>(1, grain);
  const std::int64_t units = (n + grain - 1) / grain;
  const int parts = static_cast<int>(std::min<std::int64_t>(units, num_threads()));
  if (parts <= 1 || t_inside_pool) {
    fn(0, n);
    return;
  }
  const std::int64_t per = (units + parts - 1) / parts;  // units per part
  Pool::get().run(parts, [&](int i) {
    const std::int64_t b = i * per * grain;
    const std::int64_t e = std::min(n, (i + 1) * per * grain);
    if (b >= e) return;
    t_inside_pool = true;
    fn(b, e);
    t_inside_pool = false;
  });
}

}  // namespace mfqat
