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
  e->give_kv(e->take_kv());         // a session's start and end
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
