#include "mfqat/runtime/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "batcher.h"
#include "peer_socket.h"
#include "mfqat/runtime/generate.h"

namespace mfqat::runtime {

using nlohmann::json;

namespace {

const double kBuckets[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// KV positions reserved for a request: prompt + max_tokens, at most the context (its bytes are
// counted in whole pages: Engine::kv_reserve_bytes).
std::int64_t kv_capacity(std::int64_t need, std::int64_t max_seq) { return std::min(need, max_seq); }

}  // namespace

struct Server::Impl {
  Engine& e;
  ServerOptions o;
  ChatTemplate tmpl;
  httplib::Server http;
  std::thread http_thread;
  std::unique_ptr<Batcher> batcher;
  std::mutex stop_mu;  // one stop() at a time (a signal's and the destructor's)
  std::mutex mu;
  std::condition_variable ended_cv;  // wait(): the HTTP thread ended or stop() is done
  bool started = false, stopping = false, stopped = false, http_ended = false;
  std::atomic<std::uint64_t> next_id{1};
  // metrics (under mu)
  std::map<int, std::uint64_t> by_status;
  std::map<std::string, std::uint64_t> by_format, tokens_by_format;
  std::uint64_t prompt_tokens = 0, new_tokens = 0;
  std::uint64_t lat_count = 0, lat_buckets[sizeof(kBuckets) / sizeof(kBuckets[0])] = {};
  double lat_sum = 0;

  Impl(Engine& eng, ServerOptions opt) : e(eng), o(std::move(opt)), tmpl(chat_template_for(eng)) {}

  void count(int status) {
    std::lock_guard<std::mutex> lk(mu);
    ++by_status[status];
  }

  void reply(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(dump(body), "application/json");
    count(status);
  }
  void fail(httplib::Response& res, int status, const std::string& message, const std::string& param = {}) {
    reply(res, status, error_json(status, message, param));
  }

  // A completed request's share of the metrics (called by the batcher, any thread).
  void done(const Job& j) {
    if (j.status != 200) return;
    const double total = j.queue_s + j.first_token_s + j.decode_s;
    std::lock_guard<std::mutex> lk(mu);
    ++by_format[j.format];
    for (const auto& [f, n] : j.tokens_by_format) tokens_by_format[f] += static_cast<std::uint64_t>(n);
    prompt_tokens += j.prompt_ids.size();
    new_tokens += static_cast<std::uint64_t>(j.completion_tokens);
    ++lat_count;
    lat_sum += total;
    for (std::size_t i = 0; i < std::size(kBuckets); ++i) lat_buckets[i] += total <= kBuckets[i];
  }

  std::string metrics() {
    const Batcher::Load ld = batcher ? batcher->load() : Batcher::Load{};
    std::lock_guard<std::mutex> lk(mu);
    std::string m;
    m += "# HELP mfqat_requests_total Completion requests by HTTP status.\n# TYPE mfqat_requests_total counter\n";
    for (const auto& [s, n] : by_status) m += "mfqat_requests_total{status=\"" + std::to_string(s) + "\"} " + std::to_string(n) + "\n";
    m += "# HELP mfqat_requests_by_format_total Completed requests by served format.\n# TYPE mfqat_requests_by_format_total counter\n";
    for (const auto& [f, n] : by_format) m += "mfqat_requests_by_format_total{format=\"" + f + "\"} " + std::to_string(n) + "\n";
    m += "# HELP mfqat_generated_tokens_by_format_total Generated tokens of completed requests by the format that wrote them.\n"
         "# TYPE mfqat_generated_tokens_by_format_total counter\n";
    for (const auto& [f, n] : tokens_by_format) m += "mfqat_generated_tokens_by_format_total{format=\"" + f + "\"} " + std::to_string(n) + "\n";
    m += "# HELP mfqat_auto_level The SLO policy's level (0: the first auto format).\n# TYPE mfqat_auto_level gauge\nmfqat_auto_level " +
         std::to_string(ld.auto_level) + "\n";
    m += "# TYPE mfqat_auto_level_changes_total counter\nmfqat_auto_level_changes_total " + std::to_string(ld.level_changes) + "\n";
    m += "# HELP mfqat_prefill_budget Prompt tokens a step with decode rows may take (under --slo-ms; else the prefill chunk).\n"
         "# TYPE mfqat_prefill_budget gauge\nmfqat_prefill_budget " + std::to_string(ld.prefill_budget) + "\n";
    m += "# TYPE mfqat_prompt_tokens_total counter\nmfqat_prompt_tokens_total " + std::to_string(prompt_tokens) + "\n";
    m += "# TYPE mfqat_generated_tokens_total counter\nmfqat_generated_tokens_total " + std::to_string(new_tokens) + "\n";
    m += "# TYPE mfqat_queue_depth gauge\nmfqat_queue_depth " + std::to_string(ld.queued) + "\n";
    m += "# TYPE mfqat_active_requests gauge\nmfqat_active_requests " + std::to_string(ld.running) + "\n";
    m += "# TYPE mfqat_kv_reserved_bytes gauge\nmfqat_kv_reserved_bytes " + std::to_string(ld.kv_reserved) + "\n";
    m += "# TYPE mfqat_kv_budget_bytes gauge\nmfqat_kv_budget_bytes " + std::to_string(o.kv_budget) + "\n";
    m += "# HELP mfqat_batch_steps_total Batched forward steps.\n# TYPE mfqat_batch_steps_total counter\nmfqat_batch_steps_total " + std::to_string(ld.steps) + "\n";
    m += "# HELP mfqat_batch_rows_total Token rows over all steps (rows / steps: the mean batch).\n# TYPE mfqat_batch_rows_total counter\nmfqat_batch_rows_total " +
         std::to_string(ld.rows) + "\n";
    m += "# HELP mfqat_request_latency_seconds Queue + prefill + decode time of completed requests.\n";
    m += "# TYPE mfqat_request_latency_seconds histogram\n";
    for (std::size_t i = 0; i < std::size(kBuckets); ++i) {
      m += "mfqat_request_latency_seconds_bucket{le=\"" + json(kBuckets[i]).dump() + "\"} " + std::to_string(lat_buckets[i]) + "\n";
    }
    m += "mfqat_request_latency_seconds_bucket{le=\"+Inf\"} " + std::to_string(lat_count) + "\n";
    m += "mfqat_request_latency_seconds_sum " + json(lat_sum).dump() + "\nmfqat_request_latency_seconds_count " + std::to_string(lat_count) + "\n";
    m += "# TYPE mfqat_weight_cache_bytes gauge\n";
    for (const auto& c : e.cache()) m += "mfqat_weight_cache_bytes{format=\"" + c.format + "\"} " + std::to_string(c.bytes) + "\n";
    m += "# HELP mfqat_kv_held_bytes KV pages the running requests hold (reserved: what they may grow to).\n"
         "# TYPE mfqat_kv_held_bytes gauge\nmfqat_kv_held_bytes " + std::to_string(e.held_kv_bytes()) + "\n";
    m += "# TYPE mfqat_idle_kv_bytes gauge\nmfqat_idle_kv_bytes " + std::to_string(e.idle_kv_bytes()) + "\n";
    return m;
  }

  json usage(const Job& j) const {
    const auto p = static_cast<std::int64_t>(j.prompt_ids.size());
    return {{"prompt_tokens", p}, {"completion_tokens", j.completion_tokens}, {"total_tokens", p + j.completion_tokens}};
  }
  json timing(const Job& j) const {
    return {{"queue_ms", 1e3 * j.queue_s},
            {"prefill_ms", 1e3 * j.first_token_s},
            {"decode_ms", 1e3 * j.decode_s},
            {"decode_tokens_per_s", j.decode_s > 0 && j.completion_tokens > 1 ? static_cast<double>(j.completion_tokens - 1) / j.decode_s : 0.0}};
  }
  // The head of every answer and chunk: id, object, created, model; plus the served format.
  json envelope(const Job& j, const std::string& id, std::int64_t created, bool chunk, const std::string& format) const {
    return {{"id", id},
            {"object", j.req.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
            {"created", created},
            {"model", o.model_id},
            {"format", format}};
  }

  std::string auto_at(std::size_t depth) const {
    for (std::size_t i = 0; i < o.auto_depths.size(); ++i) {
      if (depth < o.auto_depths[i]) return o.auto_formats[i];
    }
    return o.auto_formats.back();
  }

  void handle(const httplib::Request& req, httplib::Response& res, bool chat);
};

void Server::Impl::handle(const httplib::Request& req, httplib::Response& res, bool chat) {
  const auto& c = e.config();
  auto job = std::make_shared<Job>();
  try {
    RequestLimits lim;
    lim.max_prompt_bytes = o.max_prompt_bytes > 0 ? o.max_prompt_bytes : 64 * c.max_seq;
    lim.max_tokens = o.max_tokens;
    lim.model_id = o.model_id;
    job->req = parse_completion_request(
        req.body, lim, [this](const std::string& f) { return e.canonical_format(f); }, chat,
        [this](const std::vector<ChatMessage>& m, const nlohmann::ordered_json& v) { return render_chat(tmpl, m, v); });
    job->prompt_ids = encode_prompt(e, job->req.prompt);
  } catch (const RequestError& ex) {
    return fail(res, ex.status, ex.what(), ex.param);
  } catch (const std::exception& ex) {
    return fail(res, 400, ex.what());
  }
  const auto n = static_cast<std::int64_t>(job->prompt_ids.size());
  if (n >= c.max_seq) {
    return fail(res, 400, "prompt of " + std::to_string(n) + " tokens leaves no room in the context of " + std::to_string(c.max_seq) + " tokens",
                chat ? "messages" : "prompt");
  }
  job->capacity = kv_capacity(n + job->req.max_tokens, c.max_seq);
  if (e.kv_reserve_bytes(job->capacity) > o.kv_budget) {
    return fail(res, 503,
                "the request needs " + std::to_string(e.kv_reserve_bytes(job->capacity) >> 20) + " MiB of KV cache; the server's budget is " +
                    std::to_string(o.kv_budget >> 20) + " MiB (--kv-budget)");
  }
  {
    std::lock_guard<std::mutex> lk(mu);
    if (stopping) return fail(res, 503, "shutting down");
  }
  const Batcher::Load ld = batcher->load();
  if (job->req.format == "auto" && o.slo_ms > 0) {
    job->follow_auto = true;
    job->format = batcher->auto_format();
  } else {
    job->format = job->req.format == "auto" ? e.canonical_format(auto_at(ld.queued + ld.running)) : job->req.format;
  }
  if (job->format == "anchor") job->format = e.canonical_format("anchor");
  if (!batcher->submit(job)) return fail(res, 503, "queue full (" + std::to_string(o.queue_capacity) + " waiting); retry later");
  const std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id++);
  const std::int64_t created = static_cast<std::int64_t>(std::time(nullptr));
  if (!job->req.stream) {
    std::unique_lock<std::mutex> lk(job->mu);
    // A client that goes away while it waits cancels its request (the batcher drops it at the next
    // step, or when it would be admitted): its connection is looked at four times a second.
    int sock = -2;  // not looked up yet: only requests still waiting after the first look pay for it
    while (!job->cv.wait_for(lk, std::chrono::milliseconds(250), [&] { return job->done; })) {
      if (sock == -2) sock = find_peer_socket(req.remote_addr, req.remote_port, req.local_port);
      if (sock >= 0 && peer_closed(sock)) {
        job->cancelled = true;
        lk.unlock();
        return fail(res, 499, "client closed the connection");
      }
    }
    if (job->status != 200) {
      lk.unlock();
      return fail(res, job->status, job->error);
    }
    json body = envelope(*job, id, created, false, job->format);
    body["formats"] = job->tokens_by_format;  // tokens per format (several when "auto" changed it mid-stream)
    const json choice = chat ? json{{"index", 0}, {"message", {{"role", "assistant"}, {"content", job->pending}}}, {"logprobs", nullptr}, {"finish_reason", job->finish_reason}}
                             : json{{"index", 0}, {"text", job->pending}, {"logprobs", nullptr}, {"finish_reason", job->finish_reason}};
    body["choices"] = json::array({choice});
    body["usage"] = usage(*job);
    body["timing"] = timing(*job);
    lk.unlock();
    return reply(res, 200, body);
  }
  // Server-sent events: one chunk per piece of text as the scheduler produces it, the last one
  // with finish_reason, then usage (when asked), then [DONE]. A client that goes away cancels
  // its request at the next piece.
  count(200);
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  struct State {
    bool started = false, finished = false;
  };
  auto st = std::make_shared<State>();
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, job, st, id, created, chat](std::size_t, httplib::DataSink& sink) {
        auto send = [&](const json& j) {
          const std::string ev = "data: " + dump(j) + "\n\n";
          return sink.write(ev.data(), ev.size());
        };
        std::string format;      // the format that wrote this piece
        std::int64_t tokens = 0;  // completion tokens behind the text sent with this piece
        auto chunk = [&](const std::string& text, const json& finish) {
          json j = envelope(*job, id, created, true, format);
          if (finish.is_null()) j["tokens"] = tokens;  // mfqat's: lets a client time tokens, not pieces
          j["choices"] = json::array({chat ? json{{"index", 0}, {"delta", text.empty() && !finish.is_null() ? json::object() : json{{"content", text}}},
                                                 {"logprobs", nullptr}, {"finish_reason", finish}}
                                           : json{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish}}});
          return j;
        };
        if (st->finished) return false;
        {
          std::lock_guard<std::mutex> lk(job->mu);
          format = job->format;
        }
        if (!st->started && chat) {  // the assistant's role first, as OpenAI's stream does
          json j = envelope(*job, id, created, true, format);
          j["choices"] = json::array({{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
          if (!send(j)) return job->cancelled = true, false;
        }
        st->started = true;
        std::string text;
        bool done;
        {
          std::unique_lock<std::mutex> lk(job->mu);
          job->cv.wait_for(lk, std::chrono::seconds(1), [&] { return job->done || !job->pending.empty(); });
          text.swap(job->pending);
          done = job->done;
          format = job->format;
          tokens = job->tokens_written;
        }
        if (!text.empty() && !send(chunk(text, nullptr))) return job->cancelled = true, false;
        if (!done) {
          if (!sink.is_writable()) return job->cancelled = true, false;
          return true;
        }
        st->finished = true;
        if (job->status != 200) {
          send(error_json(job->status, job->error));
        } else {
          send(chunk("", job->finish_reason));
          if (job->req.include_usage) {
            json u = envelope(*job, id, created, true, format);
            u["choices"] = json::array();
            u["usage"] = usage(*job);
            u["formats"] = job->tokens_by_format;
            u["timing"] = timing(*job);
            send(u);
          }
        }
        const std::string end = "data: [DONE]\n\n";
        sink.write(end.data(), end.size());
        sink.done();
        return true;
      },
      [job](bool success) {
        if (!success) job->cancelled = true;
      });
}

Server::Server(Engine& engine, ServerOptions opt) : impl_(std::make_unique<Impl>(engine, std::move(opt))) {
  auto& o = impl_->o;
  if (o.max_batch < 1) throw std::invalid_argument("max_batch must be >= 1");
  if (static_cast<std::int64_t>(o.max_batch) > engine.kernels().ubatch) {
    throw std::invalid_argument("max_batch " + std::to_string(o.max_batch) + " exceeds ubatch " + std::to_string(engine.kernels().ubatch) +
                                " (a step's rows)");
  }
  if (o.prefill_chunk < 1) throw std::invalid_argument("prefill_chunk must be >= 1");
  if (o.kv_budget == 0) o.kv_budget = std::min<std::uint64_t>(4ull << 30, o.max_batch * engine.kv_reserve_bytes(engine.config().max_seq));
  // Pages of finished requests stay resident for the next ones: held + idle pages never exceed
  // the most the running requests ever held at once, which the budget bounds.
  engine.set_idle_kv_bytes(o.kv_budget);
  if (o.auto_formats.empty()) {
    // The anchor, then the 4-bit format of its family: the two levels whose kernels are the
    // fastest per byte here (6-bit decodes slower than 8-bit; see docs/perf.md).
    const auto& a = engine.anchor_format();
    const bool fp = a && a->family == mx::Family::Fp;
    o.auto_formats = {a ? a->name : "mxint8", fp ? "mxfp4_e2m1" : "mxint4"};
  }
  for (auto& f : o.auto_formats) f = engine.canonical_format(f);
  // Derived now: the first step down comes under load, when a derivation (and the GEMM's
  // repacking) would stall every running request for as long as it takes.
  for (const auto& f : o.auto_formats) engine.weights(f);
  // One more level every two waiting requests (2, 4, 6, ...): the default of two levels drops at 2.
  if (o.auto_depths.empty()) {
    for (std::size_t i = 1; i < o.auto_formats.size(); ++i) o.auto_depths.push_back(2 * i);
  }
  if (o.auto_depths.size() + 1 != o.auto_formats.size()) throw std::invalid_argument("auto policy: need one depth threshold fewer than formats");
  BatcherOptions b;
  b.max_batch = o.max_batch;
  b.queue_capacity = o.queue_capacity;
  b.kv_budget = o.kv_budget;
  b.prefill_chunk = o.prefill_chunk;
  b.min_prefill_chunk = std::max<std::int64_t>(1, o.min_prefill_chunk);
  b.slo_ms = o.slo_ms;
  b.hold_s = o.slo_hold_s;
  b.window_s = o.slo_window_s;
  b.auto_levels = o.auto_formats;
  Impl* im = impl_.get();
  impl_->batcher = std::make_unique<Batcher>(engine, b, [im](const Job& j) { im->done(j); });
}

Server::~Server() { stop(); }

const ServerOptions& Server::options() const { return impl_->o; }

std::string Server::auto_format(std::size_t depth) const { return impl_->auto_at(depth); }

void Server::pause(bool on) { impl_->batcher->pause(on); }

int Server::start(const std::string& host, int port) {
  Impl& s = *impl_;
  // A connection's thread waits for its request (or streams it): at least one per running and
  // waiting request, and some to spare for /metrics, /health and refusals.
  const std::size_t pool = std::max<std::size_t>(s.o.http_threads, s.o.max_batch + s.o.queue_capacity + 16);
  s.http.new_task_queue = [pool] { return new httplib::ThreadPool(pool); };
  s.http.set_payload_max_length(s.o.max_body_bytes);
  s.http.Get("/health", [&](const httplib::Request&, httplib::Response& res) { res.set_content(R"({"status":"ok"})", "application/json"); });
  s.http.Get("/v1/formats", [&](const httplib::Request&, httplib::Response& res) {
    json fs = json::array();
    std::map<std::string, std::uint64_t> cached;
    for (const auto& c : s.e.cache()) cached[c.format] = c.bytes;
    for (const auto& f : s.e.formats()) {
      json row = {{"name", f}, {"bits_per_weight", s.e.bits_per_weight(f)}, {"cached_bytes", cached.count(f) ? cached[f] : 0}};
      if (s.e.is_plan(f)) row["plan"] = true;  // a bits budget: one format per linear
      fs.push_back(row);
    }
    res.set_content(dump({{"anchor", s.e.anchor_name()}, {"formats", fs}, {"auto", s.o.auto_formats}, {"kernels", s.e.kernels().describe()},
                          {"chat_template", chat_template_name(s.tmpl)},
                          {"slo_ms", s.o.slo_ms}, {"auto_now", s.o.slo_ms > 0 ? s.batcher->auto_format() : std::string()}}),
                    "application/json");
  });
  // The model, then each servable format and "auto" as models of their own (a client that cannot
  // send the "format" field selects one by its model name).
  s.http.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) {
    const std::int64_t created = static_cast<std::int64_t>(std::time(nullptr));
    json data = json::array();
    auto add = [&](const std::string& id) { data.push_back({{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", "mfqat"}}); };
    add(s.o.model_id);
    for (const auto& f : s.e.formats()) add(f);
    add("auto");
    res.set_content(dump({{"object", "list"}, {"data", data}}), "application/json");
  });
  s.http.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) { res.set_content(s.metrics(), "text/plain; version=0.0.4"); });
  s.http.Post("/v1/completions", [&](const httplib::Request& req, httplib::Response& res) { s.handle(req, res, false); });
  s.http.Post("/v1/chat/completions", [&](const httplib::Request& req, httplib::Response& res) { s.handle(req, res, true); });
  s.http.set_error_handler([&](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) res.set_content(dump(error_json(res.status, "HTTP " + std::to_string(res.status))), "application/json");
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

// The order matters. A connection's handler waits for its job, and httplib's stop() returns only
// after every handler has returned. So new requests are refused first, the batcher fails the
// queued jobs (503, their handlers return at once) and runs the running ones to their end (their
// handlers return as they finish), then the HTTP server stops.
void Server::stop() {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> one_at_a_time(s.stop_mu);
  {
    std::lock_guard<std::mutex> lk(s.mu);
    s.stopping = true;  // handlers answer 503 from now on
  }
  s.batcher->stop();
  s.http.stop();
  if (s.http_thread.joinable()) s.http_thread.join();
  {
    std::lock_guard<std::mutex> lk(s.mu);
    s.stopped = true;
  }
  s.ended_cv.notify_all();
}

}  // namespace mfqat::runtime
