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
class Pool {
 public:
  static Pool& get() {
    static Pool pool;
    return pool;
  }
  void run(int parts, const std::function<void(int)>& job) {
    std::lock_guard<std::mutex> call_lock(call_mu_);  // one parallel region at a time
    ensure_workers(parts - 1);
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_ = &job;
      parts_ = parts;
      next_ = 0;
      done_ = 0;
      error_ = nullptr;
      ++generation_;
      ++active_;  // the calling thread works too
    }
    cv_.notify_all();
    work(job, parts);
    // The other parts are usually a few microseconds from done: spin briefly before sleeping
    // (a futex wake-up costs tens of microseconds on a VM, as much as a whole decode GEMV part).
    spin_until([&] { return done_.load(std::memory_order_acquire) == parts && active_.load(std::memory_order_acquire) == 0; });
    std::unique_lock<std::mutex> lk(mu_);
    // Wait for every part and for every worker to have left work(): none may hold this job later.
    done_cv_.wait(lk, [&] { return done_ == parts_ && active_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
      stop_flag_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

 private:
  void ensure_workers(int n) {
    while (static_cast<int>(workers_.size()) < n) {
      workers_.emplace_back([this] {
        std::uint64_t seen = 0;
        for (;;) {
          const std::function<void(int)>* job;
          int parts;
          // Back-to-back jobs (decode: one GEMV after another) find the worker awake.
          spin_until([&] { return generation_.load(std::memory_order_acquire) != seen || stop_flag_.load(std::memory_order_relaxed); });
          {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] { return stop_ || (generation_ != seen && job_ != nullptr); });
            if (stop_) return;
            seen = generation_;
            job = job_;
            parts = parts_;
            ++active_;
          }
          work(*job, parts);
        }
      });
    }
  }
  // Polls `ready` for up to kSpin (then the caller blocks on its condition variable).
  template <class Ready>
  static void spin_until(Ready ready) {
    constexpr auto kSpin = std::chrono::microseconds(200);
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; !ready(); ++i) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      if ((i & 63) == 63 && std::chrono::steady_clock::now() - start > kSpin) return;
    }
  }
  // Claims parts until none is left, then leaves (active_ was raised by the caller).
  void work(const std::function<void(int)>& job, int parts) {
    for (;;) {
      int i;
      {
        std::lock_guard<std::mutex> lk(mu_);
        i = next_++;
        if (i >= parts) {
          if (--active_ == 0 && done_ == parts_) done_cv_.notify_all();
          return;
        }
      }
      try {
        job(i);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        if (!error_) error_ = std::current_exception();
      }
      std::lock_guard<std::mutex> lk(mu_);
      ++done_;
    }
  }

  std::mutex call_mu_, mu_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  int parts_ = 0;
  int next_ = 0;
  std::atomic<int> done_{0};  // written under mu_, polled without it
  std::atomic<int> active_{0};  // written under mu_, polled without it
  std::atomic<std::uint64_t> generation_{0};  // written under mu_, polled without it
  bool stop_ = false;
  std::atomic<bool> stop_flag_{false};
  std::exception_ptr error_;
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
