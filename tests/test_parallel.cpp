// The thread pool under parallel_for, with more threads than this machine's cores: every index
// runs exactly once per call, regions never overlap or return early, exceptions reach the
// caller and leave the thread able to run parallel regions again, and concurrent callers and
// nested calls are safe. MFQAT_STRESS_SECONDS lengthens the stress loop (the sanitizer job).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mfqat/mx/parallel.h"

namespace {

double stress_seconds(double fallback) {
  if (const char* s = std::getenv("MFQAT_STRESS_SECONDS")) return std::atof(s);
  return fallback;
}

// Restores the pool's thread count when a test ends.
class ThreadCount {
 public:
  explicit ThreadCount(int n) : old_(mfqat::num_threads()) { mfqat::set_num_threads(n); }
  ~ThreadCount() { mfqat::set_num_threads(old_); }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;

 private:
  int old_;
};

// Aborts the process (a hang would otherwise last until ctest's timeout) when not disarmed in time.
class Watchdog {
 public:
  explicit Watchdog(double seconds, const char* what) {
    t_ = std::thread([this, seconds, what] {
      const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
      while (!done_.load()) {
        if (std::chrono::steady_clock::now() > end) {
          std::fprintf(stderr, "watchdog: %s did not finish in %.0f s (a hang)\n", what, seconds);
          std::abort();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
  }
  ~Watchdog() {
    done_.store(true);
    t_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  std::atomic<bool> done_{false};
  std::thread t_;
};

// Calls parallel_for with 2..16 units per call (grain 1 and 3) for `seconds`, checking after each
// call that every index ran exactly once; returns the number of calls made.
std::int64_t stress(double seconds, int tag) {
  std::atomic<int> hits[64];
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::int64_t calls = 0;
  while (std::chrono::steady_clock::now() < end) {
    for (int k = 0; k < 256; ++k, ++calls) {
      const std::int64_t n = 2 + (calls * 7 + tag) % 15 + ((calls & 1) ? 0 : 32);  // 2..16 or 34..48
      const std::int64_t grain = (calls % 3 == 0) ? 3 : 1;
      for (std::int64_t i = 0; i < n; ++i) hits[i].store(0, std::memory_order_relaxed);
      mfqat::parallel_for(n, grain, [&](std::int64_t b, std::int64_t e) {
        if (b < 0 || e > n || b >= e) std::abort();
        for (std::int64_t i = b; i < e; ++i) hits[i].fetch_add(1, std::memory_order_relaxed);
      });
      for (std::int64_t i = 0; i < n; ++i) {
        const int h = hits[i].load(std::memory_order_relaxed);
        if (h != 1) {
          ADD_FAILURE() << "call " << calls << " (n " << n << ", grain " << grain << "): index " << i << " ran " << h << " times";
          return calls;
        }
      }
    }
  }
  return calls;
}

}  // namespace

class ParallelStress : public ::testing::TestWithParam<int> {};

TEST_P(ParallelStress, EveryIndexOnceMoreThreadsThanCores) {
  const int threads = GetParam();
  ThreadCount tc(threads);
  const double secs = stress_seconds(0.7);
  Watchdog wd(30 + 4 * secs, "the stress loop");
  const std::int64_t calls = stress(secs, threads);
  if (!HasFailure()) {
    std::printf("%d threads on %u cores: %lld calls, every index once\n", threads, std::thread::hardware_concurrency(),
                static_cast<long long>(calls));
  }
  EXPECT_GT(calls, 0);
}

INSTANTIATE_TEST_SUITE_P(Threads, ParallelStress, ::testing::Values(3, 8, 16));

TEST(Parallel, ConcurrentCallersAndNestedCalls) {
  ThreadCount tc(8);
  Watchdog wd(30 + 4 * stress_seconds(0.3), "concurrent callers");
  std::vector<std::thread> callers;
  std::atomic<int> failures{0};
  for (int t = 0; t < 3; ++t) {
    callers.emplace_back([&, t] {
      const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(stress_seconds(0.3));
      while (std::chrono::steady_clock::now() < end) {
        std::atomic<int> cells[5 * 7] = {};
        // a region whose parts call parallel_for again: the nested calls run inline
        mfqat::parallel_for(5, 1, [&](std::int64_t b, std::int64_t e) {
          for (std::int64_t i = b; i < e; ++i) {
            if (!mfqat::inside_parallel_region()) failures.fetch_add(1);
            mfqat::parallel_for(7, 1, [&](std::int64_t b2, std::int64_t e2) {
              for (std::int64_t j = b2; j < e2; ++j) cells[i * 7 + j].fetch_add(1);
            });
          }
        });
        for (auto& c : cells) failures.fetch_add(c.load() != 1);
        if (mfqat::inside_parallel_region()) failures.fetch_add(1);
        (void)t;
      }
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(Parallel, ExceptionReachesCallerAndThreadStaysParallel) {
  ThreadCount tc(8);
  Watchdog wd(30, "exceptions");
  for (int round = 0; round < 200; ++round) {
    std::atomic<int> ran{0};
    bool caught = false;
    try {
      mfqat::parallel_for(8, 1, [&](std::int64_t b, std::int64_t e) {
        ran.fetch_add(static_cast<int>(e - b));
        if (b == round % 8) throw std::runtime_error("part " + std::to_string(b));
      });
    } catch (const std::runtime_error& ex) {
      caught = true;
      EXPECT_EQ(std::string(ex.what()), "part " + std::to_string(round % 8));
    }
    ASSERT_TRUE(caught) << round;
    EXPECT_EQ(ran.load(), 8) << "every part runs (and finishes) before the exception reaches the caller";
    // The calling thread ran one of the parts; a throw there must not leave it marked as inside
    // a region (its later regions would then run serially, on one core, forever).
    ASSERT_FALSE(mfqat::inside_parallel_region()) << round;
  }
  // and the regions after it still split: more than one part
  std::atomic<int> parts{0};
  mfqat::parallel_for(8, 1, [&](std::int64_t, std::int64_t) { parts.fetch_add(1); });
  EXPECT_EQ(parts.load(), 8);
}

TEST(Parallel, ChunksAreBalancedAndGrainAligned) {
  ThreadCount tc(16);
  for (std::int64_t n : {1, 2, 15, 16, 17, 100, 1001}) {
    for (std::int64_t grain : {1, 4, 64}) {
      std::mutex mu;
      std::vector<std::pair<std::int64_t, std::int64_t>> chunks;
      mfqat::parallel_for(n, grain, [&](std::int64_t b, std::int64_t e) {
        std::lock_guard<std::mutex> lk(mu);
        chunks.emplace_back(b, e);
      });
      std::sort(chunks.begin(), chunks.end());
      const std::int64_t units = (n + grain - 1) / grain;
      EXPECT_EQ(static_cast<std::int64_t>(chunks.size()), std::min<std::int64_t>(units, 16)) << n << " " << grain;
      std::int64_t at = 0, lo = n, hi = 0;
      for (auto [b, e] : chunks) {
        EXPECT_EQ(b, at);
        EXPECT_EQ(b % grain, 0);
        at = e;
        if (e != n) {
          lo = std::min(lo, (e - b) / grain);
          hi = std::max(hi, (e - b) / grain);
        }
      }
      EXPECT_EQ(at, n);
      if (hi > 0) EXPECT_LE(hi - lo, 1) << "chunk sizes differ by more than one grain: n " << n << " grain " << grain;
    }
  }
}
