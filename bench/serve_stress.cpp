// Stress test of the HTTP server on loopback: C client threads for S seconds send a mix of
// valid completion requests (every format, "auto" included), malformed ones (garbage bytes,
// truncated JSON, wrong types, limits exceeded) and rude ones (the client disconnects halfway
// through sending, right after sending without reading the answer, or in the middle of a
// streamed answer), with --idle N connections opened first that never send a byte. The server runs
// in-process on a small synthetic model. Checks: every valid request gets 200 with text, every
// malformed one 400, the server stays up (GET /health at the end), and its resident memory
// after the run stays within --rss-growth-mb of the level after a warm-up.
//   serve_stress [--clients 8] [--seconds 10] [--idle 0] [--rss-growth-mb 64] [--json FILE]
// Exit status 1 when a check fails (CTest ServeStress runs it for a few seconds).
#include <arpa/inet.h>
#include <fmt/core.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <memory>
#include <random>
#include <thread>

#include "mfqat/mx/format.h"
#include "mfqat/runtime/server.h"

using namespace mfqat;
using nlohmann::json;

namespace {

double rss_mb() {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

// Sends raw bytes on a fresh connection and closes it without reading (a rude client).
void rude(int port, const std::string& bytes) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    (void)!::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  ::close(fd);
}

// A connection that stays open and silent (closed by the destructor).
struct IdleConnection {
  int fd = -1;
  explicit IdleConnection(int port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ~IdleConnection() {
    if (fd >= 0) ::close(fd);
  }
  IdleConnection(const IdleConnection&) = delete;
  IdleConnection& operator=(const IdleConnection&) = delete;
};

std::string http_post(const std::string& body) {
  return "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

}  // namespace

int main(int argc, char** argv) {
  int clients = 8, idle = 0;
  double seconds = 10, growth_mb = 64;
  std::string json_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--clients") clients = std::stoi(v);
    else if (a == "--seconds") seconds = std::stod(v);
    else if (a == "--rss-growth-mb") growth_mb = std::stod(v);
    else if (a == "--idle") idle = std::stoi(v);
    else if (a == "--json") json_path = v;
    else { fmt::print(stderr, "unknown option {}\n", a); return 2; }
  }
  // the idle connections and the clients' own sockets live in this process: raise the soft
  // descriptor limit to the hard one (1024 by default on Debian)
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  model::LmConfig c;
  c.dim = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.max_seq = 128;
  auto e = runtime::Engine::synthetic(c, mx::find_format("mxint8"));
  runtime::ServerOptions so;
  so.max_batch = 16;
  // Valid requests must never see 503. A rude client's whole request is queued and served though
  // nobody reads the answer, and the client goes on at once, so on a loaded machine (ctest -j
  // beside a training test) such requests pile up beyond one per client: room for 16 each.
  so.queue_capacity = static_cast<std::size_t>(clients) * 16;
  so.max_tokens = 32;
  runtime::Server server(*e, so);
  const int port = server.start("127.0.0.1", 0);

  const std::vector<std::string> formats = {"mxint8", "mxint6", "mxint4", "mxint2", "auto", "anchor"};
  const std::vector<std::string> malformed = {
      "", "{", "[1,2,3]", "{\"prompt\": 3}", "{\"prompt\": \"a\", \"max_tokens\": 0}", "{\"prompt\": \"a\", \"max_tokens\": 1e9}",
      "{\"prompt\": \"a\", \"format\": \"mxint9\"}", "{\"prompt\": \"a\", \"format\": \"mxfp4\"}", "{\"prompt\": \"a\", \"temperature\": -1}",
      "{\"prompt\": \"a\", \"top_p\": 0}", "{\"prompt\": \"a\", \"bogus\": 1}", "{\"prompt\": \"" + std::string(300, 'x') + "\"}",
      std::string("\xff\xfe\x00garbage", 10), "{\"prompt\": \"a\", \"seed\": -5}"};
  std::map<std::string, std::uint64_t> counts;
  std::mutex mu;
  std::vector<std::string> failures;
  auto count = [&](const std::string& k) {
    std::lock_guard<std::mutex> lk(mu);
    ++counts[k];
  };
  auto fail = [&](const std::string& what) {
    std::lock_guard<std::mutex> lk(mu);
    if (failures.size() < 20) failures.push_back(what);
    ++counts["failures"];
  };
  auto run_clients = [&](double secs, std::uint64_t seed0) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> ts;
    ts.reserve(static_cast<std::size_t>(clients));
    for (int t = 0; t < clients; ++t) {
      ts.emplace_back([&, t] {
        std::mt19937_64 rng(seed0 + static_cast<std::uint64_t>(t));
        httplib::Client cl("127.0.0.1", port);
        cl.set_read_timeout(60, 0);
        while (!stop.load()) {
          const auto kind = rng() % 10;
          if (kind < 5) {  // valid
            const std::string& f = formats[rng() % formats.size()];
            const json body = {{"prompt", "It is a truth"}, {"max_tokens", 1 + static_cast<int>(rng() % 16)},
                               {"temperature", (rng() % 2) ? 0.0 : 0.8}, {"seed", rng() % 1000}, {"format", f}};
            auto r = cl.Post("/v1/completions", body.dump(), "application/json");
            if (!r) fail("valid request (" + f + "): no response (" + httplib::to_string(r.error()) + ")");
            else if (r->status != 200) fail("valid request (" + f + "): status " + std::to_string(r->status) + " " + r->body);
            else if (const json b = json::parse(r->body, nullptr, false); !b.contains("choices") || !b["choices"][0]["text"].is_string()) {
              fail("valid request: no text in " + r->body);
            }
            count("valid");
          } else if (kind < 8) {  // malformed
            const std::string& b = malformed[rng() % malformed.size()];
            auto r = cl.Post("/v1/completions", b, "application/json");
            if (!r) fail("malformed request '" + b.substr(0, 40) + "': no response (" + httplib::to_string(r.error()) + ")");
            else if (r->status != 400) fail("malformed request '" + b.substr(0, 40) + "': status " + std::to_string(r->status));
            count("malformed");
          } else if (rng() % 3 == 0) {  // rude: hangs up in the middle of a streamed answer
            httplib::Client sc("127.0.0.1", port);
            httplib::Request req;
            req.method = "POST";
            req.path = "/v1/completions";
            req.body = json{{"prompt", "Emma"}, {"max_tokens", 32}, {"stream", true}}.dump();
            req.set_header("Content-Type", "application/json");
            int pieces = 0;
            const int keep = 1 + static_cast<int>(rng() % 3);
            req.content_receiver = [&](const char*, std::size_t, std::uint64_t, std::uint64_t) { return ++pieces < keep; };
            sc.send(req);
            count("stream_disconnects");
          } else {  // rude: half a request, or a whole one without reading the answer
            const std::string full = http_post(json{{"prompt", "Emma"}, {"max_tokens", 8}}.dump());
            rude(port, kind == 8 ? full.substr(0, rng() % full.size()) : full);
            count("disconnects");
          }
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(secs));
    stop = true;
    for (auto& th : ts) th.join();
  };

  run_clients(std::min(2.0, seconds / 4), 1);  // warm-up: caches every format, pools, arenas
  const double rss0 = rss_mb();
  counts.clear();
  std::vector<std::unique_ptr<IdleConnection>> idlers;  // silent connections held through the run
  for (int i = 0; i < idle; ++i) idlers.push_back(std::make_unique<IdleConnection>(port));
  std::size_t idle_open = 0;
  for (const auto& c : idlers) idle_open += c->fd >= 0;
  if (static_cast<int>(idle_open) < idle) fail(fmt::format("only {} of {} idle connections opened", idle_open, idle));
  const auto t0 = std::chrono::steady_clock::now();
  run_clients(seconds, 1000);
  idlers.clear();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the rude requests finish
  const double rss1 = rss_mb();
  httplib::Client cl("127.0.0.1", port);
  auto h = cl.Get("/health");
  if (!h || h->status != 200) fail("server not healthy after the run");
  server.stop();
  if (rss1 - rss0 > growth_mb) fail(fmt::format("resident memory grew {:.1f} MB (limit {:.0f})", rss1 - rss0, growth_mb));

  const json out = {{"clients", clients},       {"seconds", wall},
                    {"valid", counts["valid"]}, {"malformed", counts["malformed"]},
                    {"disconnects", counts["disconnects"]}, {"stream_disconnects", counts["stream_disconnects"]},
                    {"idle_connections", idle}, {"failures", counts["failures"]},
                    {"valid_per_s", static_cast<double>(counts["valid"]) / wall},
                    {"rss_mb_after_warmup", rss0}, {"rss_mb_after_run", rss1}};
  fmt::print("{}\n", out.dump());
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  for (const auto& f : failures) fmt::print(stderr, "FAIL: {}\n", f);
  return failures.empty() ? 0 : 1;
}
