#include "mfqat/mx/parallel.h"

#include <algorithm>
#include <atomic>
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
  int done_ = 0;
  int active_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
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
