// The HTTP server on loopback: concurrent clients with per-request formats, every kind of bad
// request answered with its status, the bounded queue, metrics, "auto" under load, shutdown.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <tuple>

#include "common.h"
#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/generate.h"
#include "mfqat/runtime/server.h"
#include "../src/runtime/batcher.h"  // next_prefill_budget

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
  cli.set_read_timeout(60, 0);  // the default 5 s is too short under ThreadSanitizer beside a heavy test
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
  o.max_batch = 4;
  o.max_tokens = 32;
  runtime::Server s(*e, o);
  const int port = s.start("127.0.0.1", 0);
  ASSERT_GT(port, 0);
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(60, 0);
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
  EXPECT_EQ(json::parse(post(port, same)->body)["choices"][0]["text"], json::parse(post(port, same)->body)["choices"][0]["text"]);

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
    EXPECT_NE(json::parse(r->body)["error"]["message"].get<std::string>().find(needle), std::string::npos) << r->body;
    EXPECT_EQ(json::parse(r->body)["error"]["type"], "invalid_request_error") << r->body;
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
  cli.set_read_timeout(60, 0);
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
// response names the format that served it. The scheduler is held (pause), so the depth is the
// number of requests queued before, not a matter of timing.
TEST(Server, AutoServesALowerPrecisionUnderLoadThanIdle) {
  auto e = runtime::Engine::synthetic(small(), mx::find_format("mxint8"), 8);
  // bits budgets as levels (issue 22): MLP weights down first, then attention too
  std::map<std::string, std::string> mlp4, all4;
  for (const auto& [name, n] : e->linears()) {
    const bool mlp = name.find(".w1.") != std::string::npos || name.find(".w2.") != std::string::npos || name.find(".w3.") != std::string::npos;
    if (mlp) mlp4[name] = "mxint4";
    all4[name] = mlp ? "mxint4" : "mxint5";
  }
  e->add_plan("budget:mlp4", mlp4, "anchor");
  e->add_plan("budget:all4", all4, "anchor");
  struct Case {
    std::vector<std::string> formats;
    std::vector<std::size_t> depths;
    std::vector<std::string> want;  // the format of an auto request admitted at depth 0, 1, 2, ...
  };
  for (const Case& c : {Case{{}, {}, {"mxint8", "mxint8", "mxint4", "mxint4"}},  // the default policy
                        Case{{"anchor", "mxint6", "mxint4"}, {1, 3}, {"mxint8", "mxint6", "mxint6", "mxint4"}},
                        Case{{"anchor", "budget:mlp4", "budget:all4"}, {}, {"mxint8", "mxint8", "budget:mlp4", "budget:mlp4", "budget:all4"}}}) {
    SCOPED_TRACE(c.formats.empty() ? "default policy" : c.formats[1]);
    runtime::ServerOptions o;
    o.max_batch = 3;
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
    EXPECT_LT(e->bits_per_weight(got.back()), e->bits_per_weight(idle));
    // Drained: back to the anchor.
    EXPECT_EQ(served(post(port, auto_req.dump())), "mxint8");
    s.stop();
  }
}

// Issue 22: a named plan is one more format to the server: listed in /v1/formats with its bits,
// requested by name, reported in the answer, and the same tokens as the uniform format it equals.
TEST(Server, ServesNamedPlansLikeFormats) {
  auto e = runtime::Engine::synthetic(small(), mx::find_format("mxint8"), 8);
  std::map<std::string, std::string> all6, attn4;
  for (const auto& [name, n] : e->linears()) {
    all6[name] = "mxint6";
    if (name.find(".w") != std::string::npos && name.find(".w1.") == std::string::npos && name.find(".w2.") == std::string::npos &&
        name.find(".w3.") == std::string::npos)
      attn4[name] = "mxint4";
  }
  const double b6 = e->add_plan("budget:6", all6, "anchor");
  const double ba = e->add_plan("plan:attn4", attn4, "anchor");
  EXPECT_DOUBLE_EQ(b6, 6.25);
  EXPECT_GT(ba, 4.25);
  EXPECT_LT(ba, 8.25);
  runtime::ServerOptions o;
  o.max_tokens = 12;
  runtime::Server s(*e, o);
  const int port = s.start("127.0.0.1", 0);
  ASSERT_GT(port, 0);
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(60, 0);
  const auto fr = cli.Get("/v1/formats");
  ASSERT_TRUE(fr);
  std::map<std::string, json> listed;
  const json formats = json::parse(fr->body);
  for (const auto& f : formats["formats"]) listed[f["name"].get<std::string>()] = f;
  ASSERT_TRUE(listed.count("budget:6") && listed.count("plan:attn4")) << fr->body;
  EXPECT_DOUBLE_EQ(listed["budget:6"]["bits_per_weight"].get<double>(), 6.25);
  EXPECT_DOUBLE_EQ(listed["plan:attn4"]["bits_per_weight"].get<double>(), ba);
  EXPECT_TRUE(listed["budget:6"].value("plan", false));
  EXPECT_FALSE(listed["mxint6"].value("plan", false));
  auto ask = [&](const std::string& f) {
    const auto r = post(port, json{{"prompt", "It is a truth"}, {"max_tokens", 12}, {"format", f}}.dump());
    EXPECT_TRUE(r);
    if (!r) return json();
    EXPECT_EQ(r->status, 200) << r->body;
    return json::parse(r->body);
  };
  const json p6 = ask("budget:6"), u6 = ask("mxint6"), pa = ask("plan:attn4");
  EXPECT_EQ(p6.value("format", ""), "budget:6");
  EXPECT_EQ(pa.value("format", ""), "plan:attn4");
  EXPECT_EQ(p6["choices"][0]["text"], u6["choices"][0]["text"]);
  // derived in its own formats: the uniform-mxint6 plan holds exactly mxint6's bytes
  const auto fr2 = cli.Get("/v1/formats");
  ASSERT_TRUE(fr2);
  std::map<std::string, std::uint64_t> cached;
  const json after = json::parse(fr2->body);
  for (const auto& f : after["formats"]) cached[f["name"].get<std::string>()] = f["cached_bytes"].get<std::uint64_t>();
  EXPECT_GT(cached["mxint6"], 0u);
  EXPECT_EQ(cached["budget:6"], cached["mxint6"]);
  const auto bad = post(port, json{{"prompt", "x"}, {"format", "budget:5"}}.dump());
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400) << bad->body;
  s.stop();
}

// Issue 19: stop() with requests running and waiting. It used to join the HTTP thread first,
// whose connection handlers wait for their jobs' results, while the waiting jobs were failed only
// after that join: with a request queued behind held (or busy) workers, stop() never returned.
// Now the scheduler runs the running requests to their end and fails the queued ones.
TEST(Server, StopAnswersQueuedWith503LetsRunningOnesFinishAndJoinsItsThreads) {
  auto e = runtime::Engine::synthetic(small_lm(1024), mx::find_format("mxint8"), 9);
  runtime::ServerOptions o;
  o.max_batch = 4;
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
    EXPECT_GT(thread_count(), threads_before);  // the scheduler, the HTTP thread and its pool

    // Running: long generations, batched (or already done). 300 tokens: stop() lets them finish,
    // and under ThreadSanitizer with the suite running beside it 4 x 1000 came within 20 % of
    // the 20 s bound below.
    std::vector<std::future<httplib::Result>> running, queued;
    for (int i = 0; i < static_cast<int>(o.max_batch); ++i) running.push_back(post_async(port, {{"prompt", "Emma"}, {"max_tokens", 300}, {"seed", i}}));
    ASSERT_TRUE(eventually([&] {
      auto g = gauges(port);
      return g["mfqat_queue_depth"] == 0 && g["mfqat_active_requests"] + g["mfqat_request_latency_seconds_count"] >= static_cast<double>(o.max_batch);
    }));
    // Waiting: a held scheduler takes nothing more, so these stay queued whatever the timing.
    s.pause(true);
    for (int i = 0; i < 6; ++i) queued.push_back(post_async(port, {{"prompt", "Woodhouse"}, {"max_tokens", 8}, {"format", "auto"}}));
    ASSERT_TRUE(eventually([&] { return gauges(port)["mfqat_queue_depth"] == 6; }));

    const auto t0 = std::chrono::steady_clock::now();
    auto stopped = std::async(std::launch::async, [&] { s.stop(); });
    if (stopped.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
      ADD_FAILURE() << "stop() did not return within 20 s with 6 requests queued";
      s.pause(false);  // let the scheduler drain the queue so that stop() can end
    }
    stopped.get();
    const double stop_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(stop_s, 20.0);

    for (auto& f : queued) {
      auto r = f.get();
      ASSERT_TRUE(r) << "a queued request got no answer";
      EXPECT_EQ(r->status, 503) << r->body;
      EXPECT_EQ(json::parse(r->body)["error"]["message"], "shutting down");
    }
    for (auto& f : running) {
      auto r = f.get();
      ASSERT_TRUE(r) << "a running request got no answer";
      EXPECT_TRUE(r->status == 200 || r->status == 503) << r->status << " " << r->body;
      const json b = json::parse(r->body);
      if (r->status == 200) {
        EXPECT_EQ(b["usage"]["completion_tokens"], 300);  // finished, not cut short
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

namespace {

httplib::Result post_to(int port, const std::string& path, const json& body) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(60, 0);
  return cli.Post(path.c_str(), body.dump(), "application/json");
}

// The data: payloads of a server-sent-event stream, read as it arrives; `keep` may end the read
// early (the client hangs up).
std::vector<std::string> sse(int port, const std::string& path, const json& body, const std::function<bool(std::size_t)>& keep = {}) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(60, 0);
  std::string buf;
  std::vector<std::string> events;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* d, std::size_t n, std::uint64_t, std::uint64_t) {
    buf.append(d, n);
    for (std::size_t at; (at = buf.find("\n\n")) != std::string::npos;) {
      const std::string ev = buf.substr(0, at);
      buf.erase(0, at + 2);
      if (ev.rfind("data: ", 0) == 0) events.push_back(ev.substr(6));
    }
    return !keep || keep(events.size());
  };
  cli.send(req);
  return events;
}

}  // namespace

// What a JSON string makes of these bytes (invalid UTF-8 -> U+FFFD, as the server's answers;
// the random model writes arbitrary bytes).
std::string sanitized(const std::string& s) { return json::parse(json(s).dump(-1, ' ', false, json::error_handler_t::replace)).get<std::string>(); }

// The OpenAI shapes: models, completions, chat completions, streaming (deltas that add up to the
// non-streamed text, the finish reason, usage), stop strings, errors; and the text equals the
// engine's own generate() for the same prompt (a lone request: the same products).
TEST(Server, OpenAiCompletionsChatStreamingAndStopStrings) {
  auto e = runtime::Engine::synthetic(small_lm(256), mx::find_format("mxint8"), 12);
  runtime::ServerOptions o;
  o.max_tokens = 64;
  o.model_id = "tiny";
  runtime::Server s(*e, o);
  const int port = s.start("127.0.0.1", 0);
  ASSERT_GT(port, 0);
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(60, 0);
  const json models = json::parse(cli.Get("/v1/models")->body);
  EXPECT_EQ(models["object"], "list");
  ASSERT_EQ(models["data"].size(), 10u);  // the model, mxint8..2 + fp32, auto
  EXPECT_EQ(models["data"][0]["id"], "tiny");
  EXPECT_EQ(models["data"][9]["id"], "auto");

  const std::string want = sanitized(runtime::generate(*e, e->weights("mxint4"), "It is a truth", 40, {}).text);
  const json req = {{"model", "tiny"}, {"prompt", "It is a truth"}, {"max_tokens", 40}, {"format", "mxint4"}};
  auto r = post_to(port, "/v1/completions", req);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json b = json::parse(r->body);
  EXPECT_EQ(b["object"], "text_completion");
  EXPECT_EQ(b["model"], "tiny");
  EXPECT_EQ(b["format"], "mxint4");
  EXPECT_EQ(b["choices"][0]["text"], want);
  EXPECT_EQ(b["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(b["usage"]["prompt_tokens"], 13);
  EXPECT_EQ(b["usage"]["completion_tokens"], 40);
  EXPECT_EQ(b["usage"]["total_tokens"], 53);
  // the model name may select the format instead of "format"
  json by_model = req;
  by_model.erase("format");
  by_model["model"] = "mxint4";
  EXPECT_EQ(json::parse(post_to(port, "/v1/completions", by_model)->body)["choices"][0]["text"], want);

  // streamed: the deltas add up to the same text, then the finish reason, usage, [DONE]
  json sreq = req;
  sreq["stream"] = true;
  sreq["stream_options"] = {{"include_usage", true}};
  auto ev = sse(port, "/v1/completions", sreq);
  ASSERT_GE(ev.size(), 4u);
  EXPECT_EQ(ev.back(), "[DONE]");
  std::string streamed;
  for (std::size_t i = 0; i + 3 < ev.size(); ++i) {
    const json c = json::parse(ev[i]);
    EXPECT_TRUE(c["choices"][0]["finish_reason"].is_null());
    streamed += c["choices"][0]["text"].get<std::string>();
  }
  EXPECT_EQ(streamed, want);
  EXPECT_EQ(json::parse(ev[ev.size() - 3])["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(json::parse(ev[ev.size() - 2])["usage"]["completion_tokens"], 40);

  // a stop string: the text ends before its first occurrence, finish_reason "stop"; a stop
  // string split over several tokens is held back while streaming, never sent
  ASSERT_GE(want.size(), 12u);
  const std::string stop = want.substr(8, 3);
  const std::string cut = want.substr(0, want.find(stop));
  json stop_req = req;
  stop_req["stop"] = json::array({stop, "never appears"});
  const json sb = json::parse(post_to(port, "/v1/completions", stop_req)->body);
  EXPECT_EQ(sb["choices"][0]["text"], cut);
  EXPECT_EQ(sb["choices"][0]["finish_reason"], "stop");
  stop_req["stream"] = true;
  ev = sse(port, "/v1/completions", stop_req);
  streamed.clear();
  for (std::size_t i = 0; i + 1 < ev.size(); ++i) streamed += json::parse(ev[i])["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(streamed, cut);

  // chat: the plain template for this byte LM, the same text as a completion of that prompt
  const json msgs = json::array({{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Who is Emma?"}}});
  EXPECT_EQ(runtime::render_chat(runtime::ChatTemplate::Plain, {{"system", "Be brief."}, {"user", "Who is Emma?"}}),
            "System: Be brief.\nUser: Who is Emma?\nAssistant:");
  const std::string chat_want = sanitized(runtime::generate(*e, e->weights("mxint8"), "System: Be brief.\nUser: Who is Emma?\nAssistant:", 16, {}).text);
  const json creq = {{"model", "tiny"}, {"messages", msgs}, {"max_tokens", 16}};
  const json cb = json::parse(post_to(port, "/v1/chat/completions", creq)->body);
  EXPECT_EQ(cb["object"], "chat.completion");
  EXPECT_EQ(cb["format"], "mxint8");
  EXPECT_EQ(cb["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(cb["choices"][0]["message"]["content"], chat_want);
  json cs = creq;
  cs["stream"] = true;
  ev = sse(port, "/v1/chat/completions", cs);
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(json::parse(ev[0])["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(json::parse(ev[0])["object"], "chat.completion.chunk");
  streamed.clear();
  for (std::size_t i = 1; i + 2 < ev.size(); ++i) streamed += json::parse(ev[i])["choices"][0]["delta"]["content"].get<std::string>();
  EXPECT_EQ(streamed, chat_want);
  EXPECT_EQ(json::parse(ev[ev.size() - 2])["choices"][0]["finish_reason"], "length");

  // errors in OpenAI's shape, with the status and the field
  for (auto [path, body, status, param] :
       {std::tuple{"/v1/completions", json{{"model", "gpt-4"}, {"prompt", "a"}}, 404, "model"},
        std::tuple{"/v1/completions", json{{"prompt", "a"}, {"n", 2}}, 400, "n"},
        std::tuple{"/v1/completions", json{{"prompt", "a"}, {"stop", json::array({"a", "b", "c", "d", "e"})}}, 400, "stop"},
        std::tuple{"/v1/completions", json{{"prompt", "a"}, {"stream", "yes"}}, 400, "stream"},
        std::tuple{"/v1/chat/completions", json{{"prompt", "a"}}, 400, "prompt"},
        std::tuple{"/v1/chat/completions", json{{"messages", json::array()}}, 400, "messages"},
        std::tuple{"/v1/chat/completions", json{{"messages", json::array({{{"role", "robot"}, {"content", "x"}}})}}, 400, "messages"},
        std::tuple{"/v1/chat/completions", json{{"messages", msgs}, {"presence_penalty", 0.5}}, 400, "presence_penalty"}}) {
    auto er = post_to(port, path, body);
    ASSERT_TRUE(er);
    EXPECT_EQ(er->status, status) << body.dump() << " " << er->body;
    const json ej = json::parse(er->body);
    EXPECT_EQ(ej["error"]["param"], param) << er->body;
  }
  s.stop();
}

// Continuous batching: requests admitted together run in shared steps (the mean rows per step
// shows it), identical requests in one batch give identical texts, a KV budget that holds one
// request at a time makes the others wait (all answered), one that can never fit is refused
// with 503, and a streaming client that hangs up ends its generation.
TEST(Server, BatchesConcurrentRequestsWithinTheKvBudgetAndCancelsAbandonedStreams) {
  auto e = runtime::Engine::synthetic(small_lm(1024), mx::find_format("mxint8"), 13);
  {
    runtime::ServerOptions o;
    o.max_batch = 8;
    o.max_tokens = 1000;
    runtime::Server s(*e, o);
    const int port = s.start("127.0.0.1", 0);
    s.pause(true);
    std::vector<std::future<httplib::Result>> futs;
    for (int i = 0; i < 6; ++i) futs.push_back(post_async(port, {{"prompt", "Emma Woodhouse, handsome"}, {"max_tokens", 24}, {"format", "mxint4"}}));
    ASSERT_TRUE(eventually([&] { return gauges(port)["mfqat_queue_depth"] == 6; }));
    s.pause(false);
    std::string first;
    for (auto& f : futs) {
      auto r = f.get();
      ASSERT_TRUE(r);
      ASSERT_EQ(r->status, 200) << r->body;
      const std::string t = json::parse(r->body)["choices"][0]["text"];
      if (first.empty()) first = t;
      EXPECT_EQ(t, first);
    }
    const auto g = gauges(port);
    // 6 prompts in one step, then 23 decode steps of 6 rows: 6 * 24 + 6 * 23 rows over 24 steps
    EXPECT_GT(g.at("mfqat_batch_rows_total") / g.at("mfqat_batch_steps_total"), 4.0) << g.at("mfqat_batch_rows_total") << " rows in "
                                                                                    << g.at("mfqat_batch_steps_total") << " steps";
    // A client that hangs up after 3 events: its generation ends (not 1000 tokens later).
    const double before = gauges(port)["mfqat_generated_tokens_total"];
    auto ev = sse(port, "/v1/completions", {{"prompt", "Emma"}, {"max_tokens", 1000}, {"stream", true}}, [](std::size_t n) { return n < 3; });
    EXPECT_GE(ev.size(), 3u);
    ASSERT_TRUE(eventually([&] { return gauges(port)["mfqat_active_requests"] == 0; }, 30));
    EXPECT_EQ(gauges(port)["mfqat_generated_tokens_total"], before);  // a cancelled request is not counted as completed
    EXPECT_EQ(gauges(port)["mfqat_kv_reserved_bytes"], 0);  // its reservation released
    EXPECT_EQ(gauges(port)["mfqat_kv_held_bytes"], 0);      // and its pages
    EXPECT_GT(gauges(port)["mfqat_idle_kv_bytes"], 0);      // kept for the next requests
    s.stop();
  }
  {
    runtime::ServerOptions o;
    o.kv_budget = e->kv_bytes(128);  // one request of <= 128 positions at a time
    o.max_tokens = 1000;
    runtime::Server s(*e, o);
    const int port = s.start("127.0.0.1", 0);
    std::vector<std::future<httplib::Result>> futs;
    for (int i = 0; i < 4; ++i) futs.push_back(post_async(port, {{"prompt", "Emma"}, {"max_tokens", 60}, {"seed", i}}));
    for (auto& f : futs) {
      auto r = f.get();
      ASSERT_TRUE(r);
      EXPECT_EQ(r->status, 200) << r->body;
    }
    auto big = post(port, json{{"prompt", "Emma"}, {"max_tokens", 200}}.dump());  // 256 positions
    ASSERT_TRUE(big);
    EXPECT_EQ(big->status, 503);
    EXPECT_NE(json::parse(big->body)["error"]["message"].get<std::string>().find("KV cache"), std::string::npos) << big->body;
    EXPECT_LE(gauges(port)["mfqat_kv_reserved_bytes"], static_cast<double>(o.kv_budget));
    // Pages held and idle together never exceed the budget (pages are reused, not piled up).
    EXPECT_EQ(gauges(port)["mfqat_kv_held_bytes"], 0);
    EXPECT_LE(gauges(port)["mfqat_idle_kv_bytes"], static_cast<double>(o.kv_budget));
    EXPECT_GT(gauges(port)["mfqat_idle_kv_bytes"], 0);

    s.stop();
  }
}

// The SLO policy for "auto": when every inter-token gap misses the target, the level steps down
// one window at a time, and running "auto" requests change format mid-stream (their answer counts
// the tokens each format wrote); fixed-format requests are not touched; idle, it returns to the
// first level. With a target that is always met it never moves.
// Issue 23: a non-streaming client that disconnects while it waits cancels its request.
TEST(Server, NonStreamingClientThatGoesAwayCancelsItsRequest) {
  auto e = runtime::Engine::synthetic(small(), mx::find_format("mxint8"), 8);
  runtime::ServerOptions o;
  o.max_tokens = 32;
  runtime::Server s(*e, o);
  const int port = s.start("127.0.0.1", 0);
  ASSERT_GT(port, 0);
  s.pause(true);  // it waits in the queue
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const std::string body = R"({"prompt": "Emma", "max_tokens": 32})";
  const std::string msg = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(send(fd, msg.data(), msg.size(), 0), static_cast<ssize_t>(msg.size()));
  ASSERT_TRUE(eventually([&] { return gauges(port)["mfqat_queue_depth"] == 1; }));
  close(fd);  // the client gives up
  auto metrics = [&] {
    httplib::Client cli("127.0.0.1", port);
    cli.set_read_timeout(60, 0);
    const auto r = cli.Get("/metrics");
    return r ? r->body : std::string();
  };
  EXPECT_TRUE(eventually([&] { return metrics().find("mfqat_requests_total{status=\"499\"} 1") != std::string::npos; }, 10)) << metrics();
  s.pause(false);  // dropped when it would be admitted: nothing generated for it
  EXPECT_TRUE(eventually([&] { return gauges(port)["mfqat_queue_depth"] == 0 && gauges(port)["mfqat_active_requests"] == 0; }));
  EXPECT_EQ(gauges(port)["mfqat_generated_tokens_total"], 0);
  // a client that stays gets its answer
  const auto r = post(port, json{{"prompt", "Emma"}, {"max_tokens", 4}}.dump());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  s.stop();
}

// Issue 23: under an SLO, prompt chunks in a step with decode rows shrink while steps miss it.
TEST(Server, SloPrefillBudgetHalvesOnAMissAndGrowsWhenFast) {
  using runtime::next_prefill_budget;
  EXPECT_EQ(next_prefill_budget(256, 256, 90, 60, 16, 256), 128);  // missed with a full chunk
  EXPECT_EQ(next_prefill_budget(128, 40, 90, 60, 16, 256), 20);    // missed with what the prompt had left
  EXPECT_EQ(next_prefill_budget(20, 20, 90, 60, 16, 256), 16);     // never below the floor
  EXPECT_EQ(next_prefill_budget(64, 0, 90, 60, 16, 256), 64);      // decode alone missed: not the prompts' doing
  EXPECT_EQ(next_prefill_budget(64, 64, 50, 60, 16, 256), 64);     // within 70-100 %: kept
  EXPECT_EQ(next_prefill_budget(64, 64, 30, 60, 16, 256), 80);     // fast: a quarter more, at least 16
  EXPECT_EQ(next_prefill_budget(16, 16, 30, 60, 16, 256), 32);
  EXPECT_EQ(next_prefill_budget(240, 240, 30, 60, 16, 256), 256);  // never above the chunk
  EXPECT_EQ(next_prefill_budget(64, 0, 30, 60, 16, 256), 64);     // fast without a prompt: no evidence for more
  EXPECT_EQ(next_prefill_budget(64, 10, 30, 60, 16, 256), 64);    // nor with a prompt's last 10 tokens
  // In a server: a long prompt arriving while another request decodes is fed in ever smaller
  // chunks when every step misses the target.
  auto e = runtime::Engine::synthetic(small_lm(1024), mx::find_format("mxint8"), 14);
  runtime::ServerOptions o;
  o.auto_formats = {"mxint8", "mxint4"};
  o.slo_ms = 1e-6;
  o.prefill_chunk = 64;
  o.max_tokens = 64;
  runtime::Server s(*e, o);
  const int port = s.start("127.0.0.1", 0);
  ASSERT_GT(port, 0);
  EXPECT_EQ(gauges(port)["mfqat_prefill_budget"], 64);
  s.pause(true);
  // in this order (queued first, served first): the short one is decoding while the long one is read
  auto decoding = post_async(port, {{"prompt", "Emma"}, {"max_tokens", 64}, {"format", "mxint8"}});
  ASSERT_TRUE(eventually([&] { return gauges(port)["mfqat_queue_depth"] == 1; }));
  auto longp = post_async(port, {{"prompt", std::string(300, 'a')}, {"max_tokens", 2}, {"format", "mxint8"}});
  ASSERT_TRUE(eventually([&] { return gauges(port)["mfqat_queue_depth"] == 2; }));
  s.pause(false);
  const auto r1 = decoding.get(), r2 = longp.get();
  ASSERT_TRUE(r1 && r2);
  EXPECT_EQ(r1->status, 200);
  EXPECT_EQ(r2->status, 200);
  auto g = gauges(port);
  EXPECT_EQ(g["mfqat_prefill_budget"], 16);
  // steps: the first takes both prompts' first chunk (no decode rows yet: a full 64), then 64, 32,
  // 16, 16, ... of the long prompt beside the decode rows: more steps than 300 / 64 would take
  EXPECT_GE(g["mfqat_batch_steps_total"], 1 + 1 + 1 + (300 - 60 - 64 - 32) / 16);
  s.stop();
}

TEST(Server, AutoUnderAnSloStepsDownMidStreamAndReturnsWhenIdle) {
  auto e = runtime::Engine::synthetic(small_lm(1024), mx::find_format("mxint8"), 14);
  {
    runtime::ServerOptions o;
    o.auto_formats = {"mxint8", "mxint4", "mxint2"};
    o.auto_depths = {100, 200};
    o.slo_ms = 1e-6;  // missed by every gap
    o.slo_hold_s = 0.2;
    o.slo_window_s = 0.01;  // this model writes 1000 tokens in about 0.2 s
    o.max_tokens = 1000;
    runtime::Server s(*e, o);
    const int port = s.start("127.0.0.1", 0);
    s.pause(true);  // both admitted together, at the first level
    auto fixed = post_async(port, {{"prompt", "Emma"}, {"max_tokens", 1000}, {"format", "mxint8"}});
    auto ar = post_async(port, {{"prompt", "Emma"}, {"max_tokens", 1000}, {"model", "auto"}});
    ASSERT_TRUE(eventually([&] { return gauges(port)["mfqat_queue_depth"] == 2; }));
    s.pause(false);
    auto r = ar.get();
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json b = json::parse(r->body);
    EXPECT_EQ(b["format"], "mxint2");  // the last level it reached
    ASSERT_TRUE(b["formats"].contains("mxint8")) << b["formats"];  // it started at the first level
    EXPECT_TRUE(b["formats"].contains("mxint2")) << b["formats"];
    std::int64_t sum = 0;
    for (const auto& [f, n] : b["formats"].items()) sum += n.get<std::int64_t>();
    EXPECT_EQ(sum, 1000);
    const json fb = json::parse(fixed.get()->body);
    EXPECT_EQ(fb["formats"], json({{"mxint8", 1000}}));
    httplib::Client cli("127.0.0.1", port);
    cli.set_read_timeout(60, 0);
    EXPECT_GE(gauges(port)["mfqat_auto_level_changes_total"], 2);
    ASSERT_TRUE(eventually([&] { return json::parse(cli.Get("/v1/formats")->body)["auto_now"] == "mxint8"; }, 30));  // idle: back up
    s.stop();
  }
  {
    runtime::ServerOptions o;
    o.slo_ms = 1e9;  // always met
    runtime::Server s(*e, o);
    const int port = s.start("127.0.0.1", 0);
    auto r = post(port, json{{"prompt", "Emma"}, {"max_tokens", 200}, {"format", "auto"}}.dump());
    ASSERT_TRUE(r);
    EXPECT_EQ(json::parse(r->body)["formats"], json({{"mxint8", 200}}));
    EXPECT_EQ(gauges(port)["mfqat_auto_level_changes_total"], 0);
    s.stop();
  }
}

// chat_template_kwargs (vLLM's extension; Qwen 3's enable_thinking): the request's variables reach
// the model's template as transformers' apply_chat_template(**kwargs) passes them; a template's own
// variables cannot be overridden; bad shapes are a 400 naming the field.
TEST(Server, ChatTemplateKwargsReachTheTemplate) {
  const std::string cfg = R"({"chat_template":
    "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}[assistant]{% if enable_thinking is defined and enable_thinking is false %}<think></think>{% endif %}{{ style | default('') }}{% endif %}"})";
  const auto t = runtime::ChatTemplate::from_tokenizer_config(cfg, "m: chat_template");
  ASSERT_TRUE(t.has_value());
  runtime::RequestLimits lim;
  lim.max_prompt_bytes = 1000;
  const auto canonical = [](const std::string& f) { return f; };
  const runtime::RenderChat render = [&](const std::vector<runtime::ChatMessage>& m, const nlohmann::ordered_json& v) { return runtime::render_chat(*t, m, v); };
  const std::string msgs = R"("messages": [{"role": "user", "content": "Hi"}])";
  EXPECT_EQ(runtime::parse_completion_request("{" + msgs + "}", lim, canonical, true, render).prompt, "[user]Hi[assistant]");
  EXPECT_EQ(runtime::parse_completion_request("{" + msgs + R"(, "chat_template_kwargs": {"enable_thinking": false}})", lim, canonical, true, render).prompt,
            "[user]Hi[assistant]<think></think>");
  EXPECT_EQ(runtime::parse_completion_request("{" + msgs + R"(, "chat_template_kwargs": {"enable_thinking": true, "style": "!"}})", lim, canonical, true, render).prompt,
            "[user]Hi[assistant]!");
  EXPECT_EQ(runtime::parse_completion_request("{" + msgs + R"(, "chat_template_kwargs": null})", lim, canonical, true, render).prompt, "[user]Hi[assistant]");
  for (const std::string bad : {R"("chat_template_kwargs": [1])", R"("chat_template_kwargs": {"messages": []})", R"("chat_template_kwargs": {"add_generation_prompt": false})"}) {
    try {
      (void)runtime::parse_completion_request("{" + msgs + ", " + bad + "}", lim, canonical, true, render);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const runtime::RequestError& e) {
      EXPECT_EQ(e.status, 400) << bad;
      EXPECT_EQ(e.param, "chat_template_kwargs") << bad;
    }
  }
  // completions take no template
  EXPECT_THROW((void)runtime::parse_completion_request(R"({"prompt": "a", "chat_template_kwargs": {}})", lim, canonical), runtime::RequestError);
}

// A model's own chat template (tokenizer_config.json's Jinja): rendered with add_generation_prompt
// and the special tokens; a conversation it refuses is a 400 naming the template; one that does
// not parse is refused with its position. (End to end through import, export and serve with the
// real Qwen 3 and Llama 3 templates: tests/serve/chat_template_serve_test.py.)
TEST(Server, ChatTemplateFromTokenizerConfig) {
  const std::string cfg = R"({"bos_token": "<s>", "eos_token": {"content": "</s>"}, "chat_template":
    "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' and not loop.first %}{{ raise_exception('system first') }}{% endif %}[{{ m.role }}]{{ m.content | trim }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"})";
  const auto t = runtime::ChatTemplate::from_tokenizer_config(cfg, "m: chat_template");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(runtime::chat_template_name(*t), std::string("jinja"));
  EXPECT_EQ(runtime::render_chat(*t, {{"system", "Be brief."}, {"user", " Who is Emma? "}}), "<s>[system]Be brief.</s>\n[user]Who is Emma?</s>\n[assistant]");
  try {
    (void)runtime::render_chat(*t, {{"user", "a"}, {"system", "b"}});
    ADD_FAILURE() << "accepted";
  } catch (const runtime::RequestError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, "messages");
    EXPECT_EQ(std::string(e.what()), "the model's chat template refused the conversation: m: chat_template:1:103: raise_exception: system first");
  }
  EXPECT_FALSE(runtime::ChatTemplate::from_tokenizer_config(R"({"bos_token": "<s>"})", "m").has_value());
  try {
    (void)runtime::ChatTemplate::from_tokenizer_config(R"({"chat_template": "{% if x %}"})", "m: chat_template");
    ADD_FAILURE() << "accepted";
  } catch (const hf::JinjaError& e) {
    EXPECT_EQ(std::string(e.what()), "m: chat_template:1:11: unexpected end of template, expected one of: 'elif', 'else', 'endif'");
  }
  EXPECT_EQ(runtime::chat_template_name(runtime::ChatTemplate::ChatMl), std::string("chatml"));
}
