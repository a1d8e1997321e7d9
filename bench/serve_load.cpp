// Load test of `mfqat serve` on loopback: C concurrent clients send streamed completion requests
// (server-sent events) for a fixed time; reports throughput (requests/s, generated tokens/s),
// request latency, time to first token and the gaps between streamed pieces (inter-token
// latency) at p50/p99, per format policy. Starts the server in-process on a synthetic or real model.
//   serve_load [--model FILE | --synthetic default|medium|large] [--clients 1,4,16,64] [--seconds 10]
//              [--formats mxint8,mxint4,auto] [--tokens 32] [--max-batch 64] [--prefill-chunk 256] [--json FILE]
//              [--slo-ms MS --auto mxint8,mxint4,mxint2]   ("auto" under a latency target)
//              [--min-prefill-chunk N]   (under --slo-ms: the floor of a step's prompt budget)
//              [--rate R]   (open loop: R requests/s arrive on schedule, whatever the server's speed,
//                            the C clients take turns; latencies count from the scheduled arrival)
// Closed loop (the default): each client sends its next request when the last one ends, so a
// faster policy is offered more requests; --rate compares policies at the same offered load.
#include <fmt/core.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "mfqat/runtime/server.h"

using namespace mfqat;
using nlohmann::json;

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');) out.push_back(x);
  return out;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, synthetic = "medium", clients_s = "1,4,16", formats_s, json_path, anchor = "mxint8";
  double seconds = 10, slo_ms = 0, rate = 0;
  std::string auto_s;
  int tokens = 32, max_batch = 64, prefill_chunk = 256, min_prefill_chunk = 16;
  bool repack = true;  // --repack 0: the int8 GEMM packs the weights per call (the A/B of docs/perf.md)
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--model") model = v;
    else if (a == "--synthetic") synthetic = v;
    else if (a == "--anchor") anchor = v;
    else if (a == "--clients") clients_s = v;
    else if (a == "--seconds") seconds = std::stod(v);
    else if (a == "--formats") formats_s = v;
    else if (a == "--tokens") tokens = std::stoi(v);
    else if (a == "--json") json_path = v;
    else if (a == "--max-batch") max_batch = std::stoi(v);
    else if (a == "--slo-ms") slo_ms = std::stod(v);
    else if (a == "--prefill-chunk") prefill_chunk = std::stoi(v);
    else if (a == "--min-prefill-chunk") min_prefill_chunk = std::stoi(v);
    else if (a == "--auto") auto_s = v;
    else if (a == "--repack") repack = v != "0";
    else if (a == "--rate") rate = std::stod(v);
    else { fmt::print(stderr, "unknown option {}\n", a); return 2; }
  }
  std::unique_ptr<runtime::Engine> e;
  if (!model.empty()) {
    e = runtime::Engine::open(model);
  } else {
    model::LmConfig c;
    if (synthetic == "medium") {
      c.dim = 1024;
      c.n_layers = 8;
      c.n_heads = 8;
    } else if (synthetic == "large") {  // as bench --synthetic large: 2048 wide, 16 layers, FFN 5472
      c.dim = 2048;
      c.n_layers = 16;
      c.n_heads = 16;
      c.max_seq = 512;
    }
    e = runtime::Engine::synthetic(c, mx::find_format(anchor));
  }
  {
    runtime::KernelOptions k = e->kernels();
    k.repack = repack;
    e->set_kernels(k);
  }
  runtime::ServerOptions o;
  o.queue_capacity = 256;
  o.max_batch = static_cast<std::size_t>(max_batch);
  o.slo_ms = slo_ms;
  o.prefill_chunk = prefill_chunk;
  o.min_prefill_chunk = min_prefill_chunk;
  if (!auto_s.empty()) {
    o.auto_formats = split(auto_s);
    for (std::size_t i = 1; i < o.auto_formats.size(); ++i) o.auto_depths.push_back(i + 1);
  }
  runtime::Server server(*e, o);
  const int port = server.start("127.0.0.1", 0);
  if (formats_s.empty()) formats_s = e->anchor_name() + "," + server.options().auto_formats.back() + ",auto";
  for (const auto& f : split(formats_s)) {
    if (f != "auto") e->weights(f);  // derived before timing
  }
  json out = json::array();
  fmt::print("{:<12} {:>7} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}  {}\n", "format", "clients", "req/s", "gen tok/s", "lat p50",
             "lat p99", "ttft p50", "ttft p99", "itl p50", "itl p99", "tokens by format (times in ms)");
  for (const auto& f : split(formats_s)) {
    {  // warm-up: one request per format before timing
      httplib::Client cli("127.0.0.1", port);
      cli.set_read_timeout(300, 0);
      cli.Post("/v1/completions", json{{"prompt", "warm up"}, {"max_tokens", 4}, {"format", f}}.dump(), "application/json");
    }
    for (const auto& cs : split(clients_s)) {
      const int C = std::stoi(cs);
      std::atomic<bool> stop{false};
      std::mutex mu;
      std::vector<double> lat, ttft, itl;
      std::map<std::string, int> served;
      std::int64_t gen = 0, errors = 0;
      std::vector<std::thread> th;
      th.reserve(static_cast<std::size_t>(C));
      const auto t0 = std::chrono::steady_clock::now();
      for (int c = 0; c < C; ++c) {
        th.emplace_back([&, c] {
          httplib::Client cli("127.0.0.1", port);
          cli.set_read_timeout(600, 0);
          for (int i = 0; !stop; ++i) {
            auto s0 = std::chrono::steady_clock::now();
            if (rate > 0) {  // arrival c + i C of the schedule
              const auto due = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                        std::chrono::duration<double>(static_cast<double>(c + static_cast<std::int64_t>(i) * C) / rate));
              if (due >= t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(seconds))) break;
              std::this_thread::sleep_until(due);
              s0 = due;  // a client still busy with its last request sends late: the wait counts
            }
            const json body = {{"prompt", "It is a truth universally acknowledged, that a single man"}, {"max_tokens", tokens}, {"format", f},
                               {"temperature", 0.8}, {"seed", c * 100000 + i}, {"stream", true}, {"stream_options", {{"include_usage", true}}}};
            std::vector<double> at;           // ms since s0 of each streamed piece of text
            std::vector<std::int64_t> ntok;  // completion tokens behind each piece (the server's "tokens")
            std::string buf;
            std::map<std::string, std::int64_t> fm;  // tokens per format (the usage chunk)
            std::int64_t n = -1;
            httplib::Request req;
            req.method = "POST";
            req.path = "/v1/completions";
            req.body = body.dump();
            req.set_header("Content-Type", "application/json");
            req.content_receiver = [&](const char* d, std::size_t len, std::uint64_t, std::uint64_t) {
              const double now = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s0).count();
              buf.append(d, len);
              for (std::size_t p; (p = buf.find("\n\n")) != std::string::npos;) {
                const std::string ev = buf.substr(0, p);
                buf.erase(0, p + 2);
                if (ev.rfind("data: {", 0) != 0) continue;
                const json j = json::parse(ev.substr(6));
                if (j.contains("usage")) n = j["usage"]["completion_tokens"].get<std::int64_t>();
                if (j.contains("formats")) {
                  for (const auto& [k, v] : j["formats"].items()) fm[k] += v.get<std::int64_t>();
                }
                if (!j["choices"].empty() && !j["choices"][0]["text"].get<std::string>().empty() && j.contains("tokens")) {
                  at.push_back(now);
                  ntok.push_back(j["tokens"].get<std::int64_t>());
                }
              }
              return true;
            };
            httplib::Response res;
            httplib::Error err = httplib::Error::Success;
            const bool ok = cli.send(req, res, err);
            const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s0).count();
            std::lock_guard<std::mutex> lk(mu);
            if (!ok || res.status != 200 || n < 0) {
              ++errors;
              continue;
            }
            lat.push_back(ms);
            if (!at.empty()) ttft.push_back(at[0]);
            // a piece may hold several tokens (an unfinished UTF-8 character waits for its end):
            // its gap is shared by them
            for (std::size_t k = 1; k < at.size(); ++k) {
              const std::int64_t dn = std::max<std::int64_t>(1, ntok[k] - ntok[k - 1]);
              for (std::int64_t t = 0; t < dn; ++t) itl.push_back((at[k] - at[k - 1]) / static_cast<double>(dn));
            }
            gen += n;
            for (const auto& [k, v] : fm) served[k] += static_cast<int>(v);
          }
        });
      }
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
      if (rate <= 0) stop = true;  // open loop: the scheduled requests all finish
      for (auto& t : th) t.join();
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::string sv;
      for (const auto& [k, n] : served) sv += k + ":" + std::to_string(n) + " ";
      fmt::print("{:<12} {:>7} {:>8.2f} {:>10.1f} {:>9.0f} {:>9.0f} {:>9.0f} {:>9.0f} {:>8.1f} {:>8.1f}  {}{}\n", f, C,
                 static_cast<double>(lat.size()) / wall, static_cast<double>(gen) / wall, pct(lat, 0.5), pct(lat, 0.99), pct(ttft, 0.5),
                 pct(ttft, 0.99), pct(itl, 0.5), pct(itl, 0.99), sv, errors ? fmt::format(" ERRORS {}", errors) : "");
      std::fflush(stdout);
      out.push_back({{"format", f}, {"clients", C}, {"repack", repack}, {"requests", lat.size()}, {"errors", errors}, {"seconds", wall},
                     {"requests_per_s", static_cast<double>(lat.size()) / wall}, {"generated_tokens_per_s", static_cast<double>(gen) / wall},
                     {"p50_ms", pct(lat, 0.5)}, {"p99_ms", pct(lat, 0.99)}, {"ttft_p50_ms", pct(ttft, 0.5)}, {"ttft_p99_ms", pct(ttft, 0.99)},
                     {"itl_p50_ms", pct(itl, 0.5)}, {"itl_p99_ms", pct(itl, 0.99)}, {"served", served}, {"max_batch", max_batch},
                     {"tokens", tokens}, {"slo_ms", slo_ms}, {"prefill_chunk", prefill_chunk},
                     {"min_prefill_chunk", min_prefill_chunk}, {"rate", rate}});
    }
  }
  server.stop();
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  return 0;
}
