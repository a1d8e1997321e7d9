#include "mfqat/runtime/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

namespace mfqat::runtime {

using nlohmann::json;

namespace {

using Request = CompletionRequest;

struct Result {
  int status = 200;
  json body;
};

struct Job {
  Request req;
  std::promise<Result> done;
  std::chrono::steady_clock::time_point queued = std::chrono::steady_clock::now();
};

const double kBuckets[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

CompletionRequest parse_completion_request(const std::string& body, std::int64_t max_prompt, std::int64_t max_tokens,
                                         const std::function<std::string(const std::string&)>& canonical) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& ex) {
    std::string w = ex.what();
    for (auto& ch : w) ch = ch == '\n' ? ' ' : ch;
    throw std::invalid_argument("malformed JSON: " + w);
  }
  if (!j.is_object()) throw std::invalid_argument("the request must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    static const char* known[] = {"prompt", "max_tokens", "temperature", "top_k", "top_p", "seed", "format"};
    bool ok = false;
    for (const char* k : known) ok |= it.key() == k;
    if (!ok) throw std::invalid_argument("unknown field '" + it.key() + "'");
  }
  CompletionRequest r;
  if (!j.contains("prompt") || !j["prompt"].is_string()) throw std::invalid_argument("'prompt' (a string) is required");
  r.prompt = j["prompt"].get<std::string>();
  if (static_cast<std::int64_t>(r.prompt.size()) > max_prompt) {
    throw std::invalid_argument("prompt of " + std::to_string(r.prompt.size()) + " bytes exceeds the limit of " + std::to_string(max_prompt));
  }
  if (j.contains("max_tokens")) {
    if (!j["max_tokens"].is_number_integer()) throw std::invalid_argument("'max_tokens' must be an integer");
    r.max_tokens = j["max_tokens"].get<std::int64_t>();
    if (r.max_tokens < 1 || r.max_tokens > max_tokens) {
      throw std::invalid_argument("'max_tokens' must be 1.." + std::to_string(max_tokens));
    }
  }
  if (j.contains("temperature")) {
    if (!j["temperature"].is_number() || !(j["temperature"].get<double>() >= 0)) throw std::invalid_argument("'temperature' must be a number >= 0");
    r.sampling.temperature = j["temperature"].get<double>();
  }
  if (j.contains("top_k")) {
    if (!j["top_k"].is_number_integer() || j["top_k"].get<std::int64_t>() < 0) throw std::invalid_argument("'top_k' must be an integer >= 0");
    r.sampling.top_k = static_cast<int>(std::min<std::int64_t>(j["top_k"].get<std::int64_t>(), 1 << 20));
  }
  if (j.contains("top_p")) {
    if (!j["top_p"].is_number() || !(j["top_p"].get<double>() > 0 && j["top_p"].get<double>() <= 1)) {
      throw std::invalid_argument("'top_p' must be in (0, 1]");
    }
    r.sampling.top_p = j["top_p"].get<double>();
  }
  if (j.contains("seed")) {
    if (!j["seed"].is_number_unsigned()) throw std::invalid_argument("'seed' must be a non-negative integer");
    r.sampling.seed = j["seed"].get<std::uint64_t>();
  }
  r.format = "anchor";
  if (j.contains("format")) {
    if (!j["format"].is_string()) throw std::invalid_argument("'format' must be a string");
    r.format = j["format"].get<std::string>();
  }
  if (r.format != "auto") r.format = canonical(r.format);  // throws naming the format
  return r;
}

struct Server::Impl {
  Engine& e;
  ServerOptions o;
  httplib::Server http;
  std::thread http_thread;
  std::mutex stop_mu;  // one stop() at a time (a signal's and the destructor's)
  std::mutex mu;
  std::condition_variable cv;
  std::condition_variable ended_cv;  // wait(): the HTTP thread ended or stop() is done
  std::deque<std::shared_ptr<Job>> queue;
  std::vector<std::thread> workers;
  bool started = false, stopping = false, stopped = false, http_ended = false, paused = false;
  std::size_t active = 0;
  // metrics (under mu)
  std::map<int, std::uint64_t> by_status;
  std::map<std::string, std::uint64_t> by_format;
  std::uint64_t prompt_tokens = 0, new_tokens = 0;
  std::uint64_t lat_count = 0, lat_buckets[sizeof(kBuckets) / sizeof(kBuckets[0])] = {};
  double lat_sum = 0;

  Impl(Engine& eng, ServerOptions opt) : e(eng), o(std::move(opt)) {}

  void count(int status) {
    std::lock_guard<std::mutex> lk(mu);
    ++by_status[status];
  }

  void reply(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(dump(body), "application/json");
    count(status);
  }

  void worker() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] { return stopping || (!paused && !queue.empty()); });
        if (stopping) return;
        job = queue.front();
        queue.pop_front();
        ++active;
      }
      Result r;
      const double queued_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - job->queued).count();
      try {
        const auto w = e.weights(job->req.format);
        const Generation g = generate(e, w, job->req.prompt, job->req.max_tokens, job->req.sampling);
        r.body = {{"object", "text_completion"},
                  {"format", w->format},
                  {"text", g.text},
                  {"usage", {{"prompt_tokens", g.prompt_tokens}, {"completion_tokens", g.new_tokens}}},
                  {"timing",
                   {{"queue_ms", 1e3 * queued_s},
                    {"prefill_ms", 1e3 * g.prefill_seconds},
                    {"decode_ms", 1e3 * g.decode_seconds},
                    {"decode_tokens_per_s", g.decode_seconds > 0 ? static_cast<double>(g.new_tokens) / g.decode_seconds : 0.0}}}};
        const double total = queued_s + g.prefill_seconds + g.decode_seconds;
        std::lock_guard<std::mutex> lk(mu);
        ++by_format[w->format];
        prompt_tokens += static_cast<std::uint64_t>(g.prompt_tokens);
        new_tokens += static_cast<std::uint64_t>(g.new_tokens);
        ++lat_count;
        lat_sum += total;
        for (std::size_t i = 0; i < std::size(kBuckets); ++i) lat_buckets[i] += total <= kBuckets[i];
      } catch (const std::invalid_argument& ex) {
        r = {400, {{"error", ex.what()}}};
      } catch (const std::exception& ex) {
        r = {500, {{"error", ex.what()}}};
      }
      {
        std::lock_guard<std::mutex> lk(mu);
        --active;
      }
      job->done.set_value(std::move(r));
    }
  }

  Request parse(const std::string& body) {
    return parse_completion_request(body, o.max_prompt_bytes > 0 ? o.max_prompt_bytes : e.config().max_seq - 1, o.max_tokens,
                                    [this](const std::string& f) { return e.canonical_format(f); });
  }

  std::string metrics() {
    std::lock_guard<std::mutex> lk(mu);
    std::string m;
    m += "# HELP mfqat_requests_total Completion requests by HTTP status.\n# TYPE mfqat_requests_total counter\n";
    for (const auto& [s, n] : by_status) m += "mfqat_requests_total{status=\"" + std::to_string(s) + "\"} " + std::to_string(n) + "\n";
    m += "# HELP mfqat_requests_by_format_total Completed requests by served format.\n# TYPE mfqat_requests_by_format_total counter\n";
    for (const auto& [f, n] : by_format) m += "mfqat_requests_by_format_total{format=\"" + f + "\"} " + std::to_string(n) + "\n";
    m += "# TYPE mfqat_prompt_tokens_total counter\nmfqat_prompt_tokens_total " + std::to_string(prompt_tokens) + "\n";
    m += "# TYPE mfqat_generated_tokens_total counter\nmfqat_generated_tokens_total " + std::to_string(new_tokens) + "\n";
    m += "# TYPE mfqat_queue_depth gauge\nmfqat_queue_depth " + std::to_string(queue.size()) + "\n";
    m += "# TYPE mfqat_active_requests gauge\nmfqat_active_requests " + std::to_string(active) + "\n";
    m += "# HELP mfqat_request_latency_seconds Queue + prefill + decode time of completed requests.\n";
    m += "# TYPE mfqat_request_latency_seconds histogram\n";
    for (std::size_t i = 0; i < std::size(kBuckets); ++i) {
      m += "mfqat_request_latency_seconds_bucket{le=\"" + json(kBuckets[i]).dump() + "\"} " + std::to_string(lat_buckets[i]) + "\n";
    }
    m += "mfqat_request_latency_seconds_bucket{le=\"+Inf\"} " + std::to_string(lat_count) + "\n";
    m += "mfqat_request_latency_seconds_sum " + json(lat_sum).dump() + "\nmfqat_request_latency_seconds_count " + std::to_string(lat_count) + "\n";
    m += "# TYPE mfqat_weight_cache_bytes gauge\n";
    for (const auto& c : e.cache()) m += "mfqat_weight_cache_bytes{format=\"" + c.format + "\"} " + std::to_string(c.bytes) + "\n";
    m += "# TYPE mfqat_idle_kv_bytes gauge\nmfqat_idle_kv_bytes " + std::to_string(e.idle_kv_bytes()) + "\n";
    return m;
  }
};

Server::Server(Engine& engine, ServerOptions opt) : impl_(std::make_unique<Impl>(engine, std::move(opt))) {
  auto& o = impl_->o;
  if (o.workers < 1) throw std::invalid_argument("workers must be >= 1");
  engine.set_idle_kv_limit(static_cast<std::size_t>(o.workers));  // one resident KV cache per worker
  if (o.auto_formats.empty()) {
    // The anchor, then the 4-bit format of its family: the two levels whose kernels are the
    // fastest per byte here (6-bit decodes slower than 8-bit; see docs/perf.md).
    const auto& a = engine.anchor_format();
    const bool fp = a && a->family == mx::Family::Fp;
    o.auto_formats = {a ? a->name : "mxint8", fp ? "mxfp4_e2m1" : "mxint4"};
  }
  for (auto& f : o.auto_formats) f = engine.canonical_format(f);
  if (o.auto_depths.empty()) o.auto_depths = {2};
  if (o.auto_depths.size() + 1 != o.auto_formats.size()) throw std::invalid_argument("auto policy: need one depth threshold fewer than formats");
}

Server::~Server() { stop(); }

const ServerOptions& Server::options() const { return impl_->o; }

std::string Server::auto_format(std::size_t depth) const {
  const auto& o = impl_->o;
  for (std::size_t i = 0; i < o.auto_depths.size(); ++i) {
    if (depth < o.auto_depths[i]) return o.auto_formats[i];
  }
  return o.auto_formats.back();
}

void Server::pause(bool on) {
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    impl_->paused = on;
  }
  impl_->cv.notify_all();
}

int Server::start(const std::string& host, int port) {
  Impl& s = *impl_;
  s.http.new_task_queue = [] { return new httplib::ThreadPool(64); };
  s.http.set_payload_max_length(s.o.max_body_bytes);
  s.http.Get("/health", [&](const httplib::Request&, httplib::Response& res) { res.set_content(R"({"status":"ok"})", "application/json"); });
  s.http.Get("/v1/formats", [&](const httplib::Request&, httplib::Response& res) {
    json fs = json::array();
    std::map<std::string, std::uint64_t> cached;
    for (const auto& c : s.e.cache()) cached[c.format] = c.bytes;
    for (const auto& f : s.e.formats()) {
      const double bpw = f == "fp32" ? 32.0 : mx::find_format(f).bits_per_weight();
      fs.push_back({{"name", f}, {"bits_per_weight", bpw}, {"cached_bytes", cached.count(f) ? cached[f] : 0}});
    }
    res.set_content(dump({{"anchor", s.e.anchor_name()}, {"formats", fs}, {"auto", s.o.auto_formats}, {"kernels", s.e.kernels().describe()}}),
                    "application/json");
  });
  s.http.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) { res.set_content(s.metrics(), "text/plain; version=0.0.4"); });
  s.http.Post("/v1/completions", [&](const httplib::Request& req, httplib::Response& res) {
    Request r;
    try {
      r = s.parse(req.body);
    } catch (const std::exception& ex) {
      return s.reply(res, 400, {{"error", ex.what()}});
    }
    auto job = std::make_shared<Job>();
    auto fut = job->done.get_future();
    {
      std::lock_guard<std::mutex> lk(s.mu);
      if (s.stopping) return s.reply(res, 503, {{"error", "shutting down"}});
      if (s.queue.size() >= s.o.queue_capacity) {
        ++s.by_status[503];
        res.status = 503;
        res.set_content(dump({{"error", "queue full (" + std::to_string(s.o.queue_capacity) + " waiting); retry later"}}), "application/json");
        return;
      }
      if (r.format == "auto") r.format = auto_format(s.queue.size() + s.active);
      job->req = std::move(r);
      s.queue.push_back(job);
    }
    s.cv.notify_one();
    Result out = fut.get();
    s.reply(res, out.status, out.body);
  });
  s.http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) res.set_content(dump({{"error", "HTTP " + std::to_string(res.status)}}), "application/json");
  });
  // Debian's compiled cpp-httplib listens with a backlog of 5: when many clients connect at once
  // the kernel drops handshakes and a client sees its request fail with a read error
  // (bench/serve_stress found it). Keep the listening socket and deepen its accept queue.
  std::vector<int> socks;
  s.http.set_socket_options([&socks](int sock) {
    httplib::default_socket_options(sock);
    socks.push_back(sock);
  });
  const int bound = port == 0 ? s.http.bind_to_any_port(host) : (s.http.bind_to_port(host, port) ? port : -1);
  if (bound < 0) throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port));
  for (const int sock : socks) ::listen(sock, 1024);  // only the bound socket is still open
  for (int i = 0; i < s.o.workers; ++i) s.workers.emplace_back([&] { s.worker(); });
  {
    std::lock_guard<std::mutex> lk(s.mu);
    s.started = true;
  }
  s.http_thread = std::thread([&] {
    s.http.listen_after_bind();
    {
      std::lock_guard<std::mutex> lk(s.mu);
      s.http_ended = true;
    }
    s.ended_cv.notify_all();
  });
  for (int i = 0; i < 5000 && !s.http.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return bound;
}

void Server::wait() {
  Impl& s = *impl_;
  std::unique_lock<std::mutex> lk(s.mu);
  if (!s.started) return;
  // Not a join: stop() joins the HTTP thread, and may run on another thread at the same time.
  s.ended_cv.wait(lk, [&] { return s.http_ended || s.stopped; });
}

// The order matters. A connection's handler blocks on its job's future, and httplib's stop()
// returns only after every handler has returned (listen_after_bind joins its connection
// threads). So the queued jobs are failed first (503, their handlers return at once), then the
// HTTP server stops (the handlers of running jobs return when their generation ends), then the
// workers, idle ones woken by `stopping`, busy ones after their job, are joined. Failing the
// queue after joining the HTTP thread (as before) hung whenever a request was waiting.
void Server::stop() {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> one_at_a_time(s.stop_mu);
  std::deque<std::shared_ptr<Job>> failed;
  {
    std::lock_guard<std::mutex> lk(s.mu);
    s.stopping = true;  // handlers answer 503 from now on; workers take no new job
    failed.swap(s.queue);
  }
  s.cv.notify_all();
  for (auto& j : failed) j->done.set_value({503, {{"error", "shutting down"}}});
  s.http.stop();
  if (s.http_thread.joinable()) s.http_thread.join();
  for (auto& t : s.workers) {
    if (t.joinable()) t.join();
  }
  s.workers.clear();
  {
    std::lock_guard<std::mutex> lk(s.mu);
    s.stopped = true;
  }
  s.ended_cv.notify_all();
}

}  // namespace mfqat::runtime
