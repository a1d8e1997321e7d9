// The engine's format cache under concurrent callers: deriving a format does not hold the lock
// that session starts and ends (KV buffers) and the cache listing need, and a format requested
// by several threads at once is derived once.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common.h"
#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/engine.h"

using namespace mfqat;

TEST(EngineConcurrency, DerivingAFormatDoesNotStallSessionsOrTheCacheListing) {
  auto e = runtime::Engine::synthetic(small_lm(48), mx::find_format("mxint8"), 3);
  std::atomic<bool> deriving{false}, release{false}, timed_out{false};
  e->set_derive_observer([&](const std::string& f) {
    if (f != "mxint4") return;
    deriving.store(true);
    // Holds the derivation until the main thread has listed the cache and cycled a KV buffer
    // (with the lock held here, as before, that could never happen: give up after 20 s).
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!release.load()) {
      if (std::chrono::steady_clock::now() > end) {
        timed_out.store(true);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  std::thread t([&] { EXPECT_EQ(e->weights("mxint4")->format, "mxint4"); });
  while (!deriving.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(e->cache().empty());  // mxint4 is not there until it is built
  e->kv_pool().give(e->kv_pool().take());  // a KV page taken and given back
  runtime::Session s(*e, e->weights("mxint8"));  // another format meanwhile
  EXPECT_EQ(s.feed({'a', 'b'}).size(), static_cast<std::size_t>(small_lm(48).vocab));
  release.store(true);
  t.join();
  EXPECT_FALSE(timed_out.load()) << "the cache listing or a KV hand-off waited for a derivation";
  e->set_derive_observer(nullptr);
}

TEST(EngineConcurrency, AFormatRequestedByManyThreadsIsDerivedOnce) {
  auto e = runtime::Engine::synthetic(small_lm(48), mx::find_format("mxfp8_e4m3"), 5);
  std::atomic<int> builds{0};
  e->set_derive_observer([&](const std::string&) {
    builds.fetch_add(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a window for the others to arrive
  });
  mfqat::set_num_threads(3);
  std::vector<std::shared_ptr<const runtime::Weights>> got(8);
  std::vector<std::thread> ts;
  for (std::size_t i = 0; i < got.size(); ++i) ts.emplace_back([&, i] { got[i] = e->weights("mxfp4_e2m1"); });
  for (auto& t : ts) t.join();
  EXPECT_EQ(builds.load(), 1);
  for (const auto& w : got) EXPECT_EQ(w.get(), got[0].get());
  // a failing derivation reaches its caller and leaves nothing behind: the next request derives
  e->set_derive_observer([](const std::string& f) {
    if (f == "mxfp6_e2m3") throw std::runtime_error("injected failure");
  });
  EXPECT_THROW(e->weights("mxfp6_e2m3"), std::runtime_error);
  e->set_derive_observer(nullptr);
  EXPECT_EQ(e->weights("mxfp6_e2m3")->format, "mxfp6_e2m3");
}

// Sessions on many threads take and give KV pages of one pool at once (more threads than cores):
// each gets the logits it gets alone, and every page comes back.
TEST(EngineConcurrency, SessionsOnManyThreadsShareTheKvPagePool) {
  auto e = runtime::Engine::synthetic(small_lm(200), mx::find_format("mxint8"), 4);
  mfqat::set_num_threads(3);
  auto text = [](int i) {
    std::vector<int> t;
    for (int k = 0; k < 70 + 4 * i; ++k) t.push_back('a' + (k * (i + 3)) % 26);  // 70..130 positions: 2 or 3 pages
    return t;
  };
  constexpr int kThreads = 16;
  std::vector<std::vector<float>> alone(kThreads), together(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    runtime::Session s(*e, e->weights("mxint8"));
    alone[static_cast<std::size_t>(i)] = s.feed(text(i));
  }
  e->set_idle_kv_bytes(e->kv_pool().page_bytes() * 5);  // fewer idle pages than the threads hold: some are freed
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i) {
    ts.emplace_back([&, i] {
      for (int round = 0; round < 3; ++round) {
        runtime::Session s(*e, e->weights("mxint8"));
        const std::vector<int> t = text(i);
        s.feed(std::vector<int>(t.begin(), t.begin() + 40));
        together[static_cast<std::size_t>(i)] = s.feed(std::vector<int>(t.begin() + 40, t.end()));
      }
    });
  }
  for (auto& t : ts) t.join();
  for (int i = 0; i < kThreads; ++i) EXPECT_EQ(together[static_cast<std::size_t>(i)], alone[static_cast<std::size_t>(i)]) << i;
  EXPECT_EQ(e->held_kv_bytes(), 0u);
  EXPECT_EQ(e->idle_kv_bytes(), e->kv_pool().page_bytes() * 5);
}
