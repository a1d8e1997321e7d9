// Load test of `mfqat serve` on loopback: C concurrent clients send completion requests for a
// fixed time; reports throughput (requests/s, generated tokens/s) and latency p50/p99 per
// format policy. Starts the server in-process on a synthetic or real model.
//   serve_load [--model FILE | --synthetic default|medium] [--clients 1,4,16] [--seconds 10]
//              [--formats mxint8,mxint4,auto] [--tokens 32] [--json FILE]
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
  double seconds = 10;
  int tokens = 32;
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
    }
    e = runtime::Engine::synthetic(c, mx::find_format(anchor));
  }
  runtime::ServerOptions o;
  o.queue_capacity = 64;
  runtime::Server server(*e, o);
  const int port = server.start("127.0.0.1", 0);
  if (formats_s.empty()) formats_s = e->anchor_name() + "," + server.options().auto_formats.back() + ",auto";
  for (const auto& f : split(formats_s)) {
    if (f != "auto") e->weights(f);  // derived before timing
  }
  json out = json::array();
  fmt::print("{:<12} {:>8} {:>10} {:>12} {:>10} {:>10}  {}\n", "format", "clients", "req/s", "gen tok/s", "p50 ms", "p99 ms", "served formats");
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
      std::vector<double> lat;
      std::map<std::string, int> served;
      std::int64_t gen = 0, errors = 0;
      std::vector<std::thread> th;
      th.reserve(static_cast<std::size_t>(C));
      const auto t0 = std::chrono::steady_clock::now();
      for (int c = 0; c < C; ++c) {
        th.emplace_back([&, c] {
          httplib::Client cli("127.0.0.1", port);
          cli.set_read_timeout(300, 0);
          for (int i = 0; !stop; ++i) {
            const json req = {{"prompt", "It is a truth universally acknowledged, that a single man"}, {"max_tokens", tokens},
                              {"format", f}, {"temperature", 0.8}, {"seed", c * 100000 + i}};
            const auto s0 = std::chrono::steady_clock::now();
            auto r = cli.Post("/v1/completions", req.dump(), "application/json");
            const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s0).count();
            std::lock_guard<std::mutex> lk(mu);
            if (!r || r->status != 200) {
              ++errors;
              continue;
            }
            const json b = json::parse(r->body);
            lat.push_back(ms);
            gen += b["usage"]["completion_tokens"].get<std::int64_t>();
            ++served[b["format"].get<std::string>()];
          }
        });
      }
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
      stop = true;
      for (auto& t : th) t.join();
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::string sv;
      for (const auto& [k, n] : served) sv += k + ":" + std::to_string(n) + " ";
      fmt::print("{:<12} {:>8} {:>10.2f} {:>12.1f} {:>10.1f} {:>10.1f}  {}{}\n", f, C, static_cast<double>(lat.size()) / wall,
                 static_cast<double>(gen) / wall, pct(lat, 0.5), pct(lat, 0.99), sv, errors ? fmt::format(" ERRORS {}", errors) : "");
      std::fflush(stdout);
      out.push_back({{"format", f}, {"clients", C}, {"requests", lat.size()}, {"errors", errors}, {"seconds", wall},
                     {"requests_per_s", static_cast<double>(lat.size()) / wall}, {"generated_tokens_per_s", static_cast<double>(gen) / wall},
                     {"p50_ms", pct(lat, 0.5)}, {"p99_ms", pct(lat, 0.99)}, {"served", served}});
    }
  }
  server.stop();
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  return 0;
}
