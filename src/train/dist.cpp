#include "mfqat/train/dist.h"

#include <glog/logging.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdlib>
#include <stdexcept>

namespace mfqat::train {

namespace {

// The first line of an exception's message (c10 errors carry a backtrace after it).
std::string first_line(const std::exception& e) {
  const auto* ce = dynamic_cast<const c10::Error*>(&e);
  std::string s = ce ? ce->what_without_backtrace() : e.what();
  const auto nl = s.find('\n');
  if (nl != std::string::npos) s.resize(nl);
  return s;
}

std::chrono::milliseconds millis(double seconds) { return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000)); }

bool is_loopback(const std::string& host) { return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1"; }

class GlooComm : public Comm {
 public:
  explicit GlooComm(const DistOptions& o) : opt_(o) {
    const auto [host, port] = parse_master(o.master);
    const std::string where = "rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size) + ": rendezvous at " + o.master;
    // c10d also logs its socket errors through glog; they are reported here as one line instead.
    FLAGS_minloglevel = google::GLOG_FATAL;
    try {
      c10d::TCPStoreOptions so;
      so.port = port;
      so.isServer = o.rank == 0;
      so.numWorkers = static_cast<std::size_t>(o.world_size);
      so.waitWorkers = true;
      so.timeout = millis(o.timeout_s);
      store_ = c10::make_intrusive<c10d::TCPStore>(host, so);
      auto go = c10d::ProcessGroupGloo::Options::create(millis(o.timeout_s));
      // The address Gloo listens on: GLOO_SOCKET_IFNAME's interface (as in PyTorch), else
      // loopback when the master is on loopback, else this host's name.
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname && *ifname) {
        go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (is_loopback(host)) {
        go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        go->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      go->threads = 2;
      pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, o.rank, o.world_size, go);
    } catch (const std::exception& e) {
      throw std::runtime_error(where + " failed (timeout " + std::to_string(static_cast<int>(o.timeout_s)) + " s): " + first_line(e));
    }
  }

  int rank() const override { return opt_.rank; }
  int size() const override { return opt_.world_size; }

  void broadcast(std::vector<torch::Tensor> tensors, const std::string& what) override {
    torch::NoGradGuard ng;
    std::vector<torch::Tensor> flat{flatten(tensors)};
    run([&] { return pg_->broadcast(flat); }, "broadcasting " + what);
    unflatten(flat[0], tensors);
  }

  double allreduce_gradients(const std::vector<torch::Tensor>& params, double loss, std::int64_t step) override {
    const auto t0 = std::chrono::steady_clock::now();
    torch::NoGradGuard ng;
    // Buckets of consecutive gradients; the loss rides in the first one.
    std::vector<std::vector<torch::Tensor>> groups(1);
    std::int64_t in_bucket = 0;
    const auto limit = static_cast<std::int64_t>(opt_.bucket_mb * 1024 * 1024 / sizeof(float));
    groups[0].push_back(torch::full({1}, static_cast<float>(loss)));
    for (const auto& p : params) {
      torch::Tensor g = p.grad();
      if (!g.defined()) {  // an unused parameter: a zero gradient, so every rank sends the same layout
        const_cast<torch::Tensor&>(p).mutable_grad() = torch::zeros_like(p);
        g = p.grad();
      }
      if (in_bucket > 0 && in_bucket + g.numel() > limit) {
        groups.emplace_back();
        in_bucket = 0;
      }
      groups.back().push_back(g);
      in_bucket += g.numel();
    }
    std::vector<std::vector<torch::Tensor>> flats;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    const std::string what = "the gradient all-reduce at step " + std::to_string(step);
    for (auto& grp : groups) {
      flats.push_back({flatten(grp)});
      works.push_back(start([&] { return pg_->allreduce(flats.back()); }, what));
    }
    for (auto& w : works) wait(w, what);
    double total = 0;
    for (std::size_t i = 0; i < groups.size(); ++i) {
      if (i == 0) {
        total = flats[0][0][0].item<double>();
        std::vector<torch::Tensor> rest(groups[0].begin() + 1, groups[0].end());
        unflatten(flats[0][0].slice(0, 1), rest);
      } else {
        unflatten(flats[i][0], groups[i]);
      }
    }
    comm_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return total;
  }

  void barrier(const std::string& what) override {
    run([&] { return pg_->barrier(); }, what);
  }

  double comm_seconds() const override { return comm_s_; }

 private:
  static torch::Tensor flatten(const std::vector<torch::Tensor>& ts) {
    std::vector<torch::Tensor> v;
    v.reserve(ts.size());
    for (const auto& t : ts) v.push_back(t.detach().reshape({-1}));
    return torch::cat(v);
  }
  static void unflatten(const torch::Tensor& flat, const std::vector<torch::Tensor>& ts) {
    std::int64_t off = 0;
    for (const auto& t : ts) {
      const std::int64_t n = t.numel();
      t.detach().view({-1}).copy_(flat.slice(0, off, off + n));
      off += n;
    }
  }
  std::runtime_error lost(const std::exception& e, const std::string& what) const {
    return std::runtime_error("rank " + std::to_string(opt_.rank) + " of " + std::to_string(opt_.world_size) + ": " + what +
                              " failed (a rank died, or none answered within " + std::to_string(static_cast<int>(opt_.timeout_s)) +
                              " s): " + first_line(e));
  }
  template <class F>
  c10::intrusive_ptr<c10d::Work> start(F&& f, const std::string& what) {
    try {
      return f();
    } catch (const std::exception& e) {
      throw lost(e, what);
    }
  }
  void wait(const c10::intrusive_ptr<c10d::Work>& w, const std::string& what) {
    try {
      w->wait(millis(opt_.timeout_s));
    } catch (const std::exception& e) {
      throw lost(e, what);
    }
  }
  template <class F>
  void run(F&& f, const std::string& what) {
    wait(start(std::forward<F>(f), what), what);
  }

  DistOptions opt_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg_;
  double comm_s_ = 0;
};

}  // namespace

std::pair<std::string, std::uint16_t> parse_master(const std::string& s) {
  const auto colon = s.rfind(':');
  const auto bad = [&] { return std::invalid_argument("--master '" + s + "': expected ADDR:PORT with a port in 1..65535"); };
  if (colon == std::string::npos || colon == 0 || colon + 1 >= s.size()) throw bad();
  std::string host = s.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  long port = 0;
  for (std::size_t i = colon + 1; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') throw bad();
    port = port * 10 + (s[i] - '0');
    if (port > 65535) throw bad();
  }
  if (port < 1) throw bad();
  return {host, static_cast<std::uint16_t>(port)};
}

std::unique_ptr<Comm> Comm::connect(const DistOptions& opt) {
  if (opt.world_size < 1) throw std::invalid_argument("--world-size must be at least 1");
  if (opt.rank < 0 || opt.rank >= opt.world_size) {
    throw std::invalid_argument("--rank " + std::to_string(opt.rank) + " is out of range 0.." + std::to_string(opt.world_size - 1));
  }
  if (!(opt.timeout_s > 0)) throw std::invalid_argument("--dist-timeout must be positive");
  return std::make_unique<GlooComm>(opt);
}

}  // namespace mfqat::train
