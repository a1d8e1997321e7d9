// The HTTP server on loopback: concurrent clients with per-request formats, every kind of bad
// request answered with its status, the bounded queue, metrics.
#include <gtest/gtest.h>
#include <httplib.h>

#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "common.h"
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
