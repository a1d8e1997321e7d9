// The HTTP server on loopback: concurrent clients with per-request formats, every kind of bad
// request answered with its status, the bounded queue, metrics, "auto" under load, shutdown.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common.h"
#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/server.h"

using namespace mfqat;
using nlohmann::json;

namespace {

model::LmConfig small() { return small_lm(64); }

httplib::Result post(int port, const std::string& body) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(60, 0);
  return cli.Post("/v1/completions", body, "application/json");
}

std::future<httplib::Result> post_async(int port, const json& body) {
  return std::async(std::launch::async, [port, b = body.dump()] { return post(port, b); });
}

// The unlabelled samples of /metrics ("mfqat_queue_depth 3"), read in one response (one
// snapshot under the server's lock); empty when the server does not answer.
std::map<std::string, double> gauges(int port) {
  httplib::Client cli("127.0.0.1", port);
  std::map<std::string, double> out;
  auto r = cli.Get("/metrics");
  if (!r) return out;
  std::istringstream in(r->body);
  for (std::string name, value; in >> name >> value;) {
    if (name[0] != '#' && name.find('{') == std::string::npos) out[name] = std::stod(value);
    std::getline(in, value);
  }
  return out;
}

// Polls `ready` every few ms for up to `seconds` (generous: sanitizer builds, ctest -j2).
template <class Ready>
bool eventually(Ready ready, double seconds = 60) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!ready()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// Threads of this process now (Linux).
std::size_t thread_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& t : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

}  // namespace

TEST(Server, ConcurrentClientsGetTheirFormatsAndBadRequestsTheirStatus) {
  auto e = runtime::Engine::synthetic(small(), mx::find_format("mxint8"), 5);
  runtime::ServerOptions o;
  o.workers = 2;
  o.max_tokens = 32;
  runtime::Server s(*e, o);
  const int port = s.start("127.0.0.1", 0);
  ASSERT_GT(port, 0);
  httplib::Client cli("127.0.0.1", port);
  auto h = cli.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto f = cli.Get("/v1/formats");
  ASSERT_TRUE(f);
  const json fj = json::parse(f->body);
  EXPECT_EQ(fj["anchor"], "mxint8");
  EXPECT_EQ(fj["formats"].size(), 8u);  // mxint8..2 + fp32
  EXPECT_EQ(fj["kernels"], e->kernels().describe());  // the loops that compute its logits

  const std::vector<std::string> formats = {"mxint8", "mxint4", "mxint2", "anchor", "mxint6", "fp32", "auto", "mxint3"};
  std::vector<std::future<std::pair<int, json>>> futs;
  futs.reserve(16);
  for (int i = 0; i < 16; ++i) {
    futs.push_back(std::async(std::launch::async, [&, i] {
      const json req = {{"prompt", "Emma Woodhouse"}, {"max_tokens", 8 + i % 5}, {"format", formats[i % formats.size()]}, {"seed", i}};
      auto r = post(port, req.dump());
      return r ? std::pair{r->status, json::parse(r->body)} : std::pair{-1, json()};
    }));
  }
  for (int i = 0; i < 16; ++i) {
    const auto [status, body] = futs[static_cast<std::size_t>(i)].get();
    ASSERT_EQ(status, 200) << body.dump();
    const std::string& want = formats[i % formats.size()];
    if (want == "anchor") {
      EXPECT_EQ(body["format"], "mxint8");
    } else if (want == "auto") {
      EXPECT_TRUE(body["format"] == "mxint8" || body["format"] == "mxint4") << body["format"];
    } else {
      EXPECT_EQ(body["format"], want);
    }
    EXPECT_EQ(body["usage"]["completion_tokens"], 8 + i % 5);
  }
  // Same request, same answer (greedy).
  const std::string same = R"({"prompt": "Emma", "max_tokens": 10, "format": "mxint4"})";
  EXPECT_EQ(json::parse(post(port, same)->body)["text"], json::parse(post(port, same)->body)["text"]);

  for (auto [body, needle] : {std::pair{"{oops", "malformed JSON"},
                              std::pair{"[1, 2]", "JSON object"},
                              std::pair{R"({"max_tokens": 4})", "'prompt'"},
                              std::pair{R"({"prompt": "a", "format": "mxint9"})", "mxint9"},
                              std::pair{R"({"prompt": "a", "format": "mxfp4"})", "cannot be derived from the mxint8 anchor"},
                              std::pair{R"({"prompt": "a", "max_tokens": 33})", "max_tokens"},
                              std::pair{R"({"prompt": "a", "max_tokens": "many"})", "max_tokens"},
                              std::pair{R"({"prompt": "a", "temperature": -1})", "temperature"},
                              std::pair{R"({"prompt": "a", "top_p": 0})", "top_p"},
                              std::pair{R"({"prompt": "a", "colour": "red"})", "unknown field 'colour'"}}) {
    auto r = post(port, body);
    ASSERT_TRUE(r) << body;
    EXPECT_EQ(r->status, 400) << body;
    EXPECT_NE(json::parse(r->body)["error"].get<std::string>().find(needle), std::string::npos) << r->body;
  }
  auto longp = post(port, json{{"prompt", std::string(64, 'x')}}.dump());
  EXPECT_EQ(longp->status, 400);
  EXPECT_EQ(cli.Get("/nope")->status, 404);
  EXPECT_EQ(cli.Get("/v1/completions")->status, 404);  // GET on a POST route

  const std::string m = cli.Get("/metrics")->body;
  EXPECT_NE(m.find("mfqat_requests_total{status=\"200\"} 18"), std::string::npos) << m;
  EXPECT_NE(m.find("mfqat_requests_total{status=\"400\"} 11"), std::string::npos) << m;
  EXPECT_NE(m.find("mfqat_requests_by_format_total{format=\"mxint2\"} 2"), std::string::npos) << m;
  EXPECT_NE(m.find("mfqat_request_latency_seconds_count 18"), std::string::npos) << m;
  s.stop();
}

TEST(Server, FullQueueAnswers503AndAutoDropsPrecisionWithDepth) {
  auto e = runtime::Engine::synthetic(small(), mx::find_format("mxfp8_e4m3"), 6);
  runtime::ServerOptions o;
  o.queue_capacity = 1;
  runtime::Server s(*e, o);
  EXPECT_EQ(s.auto_format(0), "mxfp8_e4m3");
  EXPECT_EQ(s.auto_format(1), "mxfp8_e4m3");
  EXPECT_EQ(s.auto_format(2), "mxfp4_e2m1");
  EXPECT_EQ(s.auto_format(9), "mxfp4_e2m1");
  runtime::ServerOptions three = o;  // a custom three-level policy
  three.auto_formats = {"anchor", "mxfp6_e2m3", "mxfp4"};
  three.auto_depths = {1, 3};
  runtime::Server s3(*e, three);
  EXPECT_EQ(s3.auto_format(0), "mxfp8_e4m3");
  EXPECT_EQ(s3.auto_format(1), "mxfp6_e2m3");
  EXPECT_EQ(s3.auto_format(3), "mxfp4_e2m1");
  three.auto_depths = {1};
  EXPECT_THROW(runtime::Server(*e, three), std::invalid_argument);
  const int port = s.start("127.0.0.1", 0);
  s.pause(true);  // the worker holds: the first request waits in the queue
  auto first = std::async(std::launch::async, [&] { return post(port, R"({"prompt": "a", "max_tokens": 2, "format": "auto"})"); });
  httplib::Client cli("127.0.0.1", port);
  for (int i = 0; i < 2000 && cli.Get("/metrics")->body.find("mfqat_queue_depth 1") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  auto second = post(port, R"({"prompt": "b", "max_tokens": 2})");
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 503);
  s.pause(false);
  auto r = first.get();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(r->body)["format"], "mxfp8_e4m3");  // admitted at depth 0
  s.stop();
}

// "auto" end to end: the depth at admission (waiting + running) picks the format, and the
// response names the format that served it. The workers are held (pause), so the depth is the
// number of requests queued before, not a matter of timing.
TEST(Server, AutoServesALowerPrecisionUnderLoadThanIdle) {
  auto e = runtime::Engine::synthetic(small(), mx::find_format("mxint8"), 8);
  struct Case {
    std::vector<std::string> formats;
    std::vector<std::size_t> depths;
    std::vector<std::string> want;  // the format of an auto request admitted at depth 0, 1, 2, ...
  };
  for (const Case& c : {Case{{}, {}, {"mxint8", "mxint8", "mxint4", "mxint4"}},  // the default policy
                        Case{{"anchor", "mxint6", "mxint4"}, {1, 3}, {"mxint8", "mxint6", "mxint6", "mxint4"}}}) {
    SCOPED_TRACE(c.formats.empty() ? "default policy" : "three levels");
    runtime::ServerOptions o;
    o.workers = 3;
    o.queue_capacity = 8;
    o.max_tokens = 8;
    o.auto_formats = c.formats;
    o.auto_depths = c.depths;
    runtime::Server s(*e, o);
    const int port = s.start("127.0.0.1", 0);
    ASSERT_GT(port, 0);
    auto served = [](const httplib::Result& r) {
      EXPECT_TRUE(r);
      if (!r) return std::string("(no answer)");
      EXPECT_EQ(r->status, 200) << r->body;
      return json::parse(r->body).value("format", std::string("(none)"));
    };
    const json auto_req = {{"prompt", "Emma"}, {"max_tokens", 4}, {"format", "auto"}};
    const std::string idle = served(post(port, auto_req.dump()));
    EXPECT_EQ(idle, "mxint8");

    s.pause(true);  // nothing runs: every request admitted from now on waits in the queue
    std::vector<std::future<httplib::Result>> futs;
    for (std::size_t d = 0; d < c.want.size(); ++d) {
      // One auto request admitted at depth d, then wait until the server has queued it.
      futs.push_back(post_async(port, auto_req));
      ASSERT_TRUE(eventually([&] { return gauges(port)["mfqat_queue_depth"] == static_cast<double>(d + 1); })) << "depth " << d;
    }
    s.pause(false);
    std::vector<std::string> got;
    for (std::size_t d = 0; d < c.want.size(); ++d) {
      got.push_back(served(futs[d].get()));
      EXPECT_EQ(got.back(), c.want[d]) << "admitted at depth " << d;
    }
    // Under load (the deepest queue), a lower precision than idle.
    ASSERT_NE(got.back().find("mxint"), std::string::npos) << got.back();
    EXPECT_LT(mx::find_format(got.back()).bits_per_weight(), mx::find_format(idle).bits_per_weight());
    // Drained: back to the anchor.
    EXPECT_EQ(served(post(port, auto_req.dump())), "mxint8");
    s.stop();
  }
}

// Issue 19: stop() with requests running and waiting. It used to join the HTTP thread first,
// whose connection handlers wait for their jobs' results, while the waiting jobs were failed only
// after that join: with a request queued behind held (or busy) workers, stop() never returned.
TEST(Server, StopAnswersQueuedWith503LetsRunningOnesFinishAndJoinsItsThreads) {
  auto e = runtime::Engine::synthetic(small_lm(1024), mx::find_format("mxint8"), 9);
  runtime::ServerOptions o;
  o.workers = 4;  // more generation threads than this machine's 2 cores
  o.queue_capacity = 16;
  o.max_tokens = 1000;
  // Warm up what lives on after a server (the GEMV pool at its full size, the derived weights),
  // so that the thread count below sees the server's threads only.
  mfqat::parallel_for(mfqat::num_threads(), 1, [](std::int64_t, std::int64_t) {});
  runtime::generate(*e, e->weights("mxint8"), "warm", 4, {});
  const std::size_t threads_before = thread_count();
  {
    runtime::Server s(*e, o);
    const int port = s.start("127.0.0.1", 0);
    ASSERT_GT(port, 0);
    EXPECT_GT(thread_count(), threads_before);  // workers, the HTTP thread and its pool

    // Running: one long generation per worker, taken by the workers (or already done).
    std::vector<std::future<httplib::Result>> running, queued;
    for (int i = 0; i < o.workers; ++i) running.push_back(post_async(port, {{"prompt", "Emma"}, {"max_tokens", 1000}, {"seed", i}}));
    ASSERT_TRUE(eventually([&] {
      auto g = gauges(port);
      return g["mfqat_queue_depth"] == 0 && g["mfqat_active_requests"] + g["mfqat_request_latency_seconds_count"] >= o.workers;
    }));
    // Waiting: held workers take nothing more, so these stay queued whatever the timing.
    s.pause(true);
    for (int i = 0; i < 6; ++i) queued.push_back(post_async(port, {{"prompt", "Woodhouse"}, {"max_tokens", 8}, {"format", "auto"}}));
    ASSERT_TRUE(eventually([&] { return gauges(port)["mfqat_queue_depth"] == 6; }));

    const auto t0 = std::chrono::steady_clock::now();
    auto stopped = std::async(std::launch::async, [&] { s.stop(); });
    if (stopped.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
      ADD_FAILURE() << "stop() did not return within 20 s with 6 requests queued";
      s.pause(false);  // the old order: let the workers drain the queue so that stop() can end
    }
    stopped.get();
    const double stop_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(stop_s, 20.0);

    for (auto& f : queued) {
      auto r = f.get();
      ASSERT_TRUE(r) << "a queued request got no answer";
      EXPECT_EQ(r->status, 503) << r->body;
      EXPECT_EQ(json::parse(r->body)["error"], "shutting down");
    }
    for (auto& f : running) {
      auto r = f.get();
      ASSERT_TRUE(r) << "a running request got no answer";
      EXPECT_TRUE(r->status == 200 || r->status == 503) << r->status << " " << r->body;
      const json b = json::parse(r->body);
      if (r->status == 200) {
        EXPECT_EQ(b["usage"]["completion_tokens"], 1000);  // finished, not cut short
      } else {
        EXPECT_TRUE(b.contains("error")) << r->body;
      }
    }
    // Every thread the server started is joined (the client threads above are too: get()).
    EXPECT_EQ(thread_count(), threads_before);
    const auto t1 = std::chrono::steady_clock::now();
    s.stop();  // idempotent
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count(), 5.0);
    s.wait();  // returns: stopped
  }  // and the destructor's stop() again
  EXPECT_EQ(thread_count(), threads_before);
}
