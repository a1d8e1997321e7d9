#include "mfqat/train/trainer.h"

#include <fmt/core.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <stdexcept>

#include "mfqat/ckpt/file.h"
#include "mfqat/ckpt/safetensors.h"
#include "mfqat/data/idx.h"

namespace mfqat::train {

namespace {

// [B, T+1] windows starting at the given offsets.
torch::Tensor windows(const std::vector<std::uint8_t>& text, const std::vector<std::int64_t>& starts, std::int64_t len) {
  torch::Tensor out = torch::empty({static_cast<std::int64_t>(starts.size()), len}, torch::kInt64);
  auto a = out.accessor<std::int64_t, 2>();
  for (std::size_t b = 0; b < starts.size(); ++b) {
    for (std::int64_t i = 0; i < len; ++i) a[b][i] = text[starts[b] + i];
  }
  return out;
}

torch::Tensor lm_loss(QuantModelImpl& m, const torch::Tensor& win) {
  const std::int64_t T = win.size(1) - 1;
  const torch::Tensor logits = m.forward(win.slice(1, 0, T));
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), win.slice(1, 1, T + 1).reshape({-1}));
}

double lr_at(const TrainOptions& o, std::int64_t step) {
  if (step < o.warmup) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup);
  const double p = o.steps > o.warmup ? static_cast<double>(step - o.warmup) / static_cast<double>(o.steps - o.warmup) : 1.0;
  return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * std::min(1.0, p))));
}

struct LoopState {
  std::int64_t step = 0;
  std::vector<std::int64_t> fixed;
};

// Atomic and durable: serialised in memory, then written beside PATH, fsync'ed and renamed over
// it (ckpt::AtomicWriter), so a kill or a full disk at any point leaves the previous state.
void save_state(QuantModelImpl& model, const torch::optim::AdamW& adam, const LoopState& st, const std::mt19937_64& rng,
                const std::string& path) {
  torch::serialize::OutputArchive a;
  for (const auto& p : model.named_parameters()) a.write("param/" + p.key(), p.value().detach());
  torch::serialize::OutputArchive opt;
  adam.save(opt);
  a.write("optimizer", opt);
  a.write("step", c10::IValue(st.step));
  a.write("fixed", torch::tensor(st.fixed.empty() ? std::vector<std::int64_t>{-1} : st.fixed, torch::kInt64));
  std::ostringstream r;
  r << rng;
  a.write("rng", c10::IValue(r.str()));
  a.write("config", c10::IValue(model.model_config().to_json()));
  std::ostringstream bytes;
  a.save_to(bytes);
  const std::string b = bytes.str();
  ckpt::write_file_atomic(path, b.data(), b.size());
}

// The first gradient or weight holding NaN/Inf, named ("" when all are finite).
std::string first_non_finite(QuantModelImpl& model) {
  for (const auto& p : model.named_parameters()) {
    const auto& g = p.value().grad();
    if (g.defined() && !torch::isfinite(g).all().item<bool>()) return "the gradient of '" + p.key() + "'";
  }
  for (const auto& p : model.named_parameters()) {
    if (!torch::isfinite(p.value()).all().item<bool>()) return "weight '" + p.key() + "'";
  }
  return "";
}

void load_state(QuantModelImpl& model, torch::optim::AdamW& adam, LoopState* st, std::mt19937_64* rng, const std::string& path) {
  if (!std::ifstream(path)) throw std::runtime_error(path + ": no training state to resume from");
  torch::serialize::InputArchive a;
  try {
    a.load_from(path);
  } catch (const c10::Error&) {
    throw std::runtime_error(path + ": not a readable training state");
  }
  c10::IValue cfg;
  a.read("config", cfg);
  if (cfg.toStringRef() != model.model_config().to_json()) throw std::runtime_error(path + ": training state is for another model config");
  torch::NoGradGuard ng;
  for (auto& p : model.named_parameters()) {
    torch::Tensor t;
    a.read("param/" + p.key(), t);
    p.value().copy_(t);
  }
  torch::serialize::InputArchive opt;
  a.read("optimizer", opt);
  adam.load(opt);
  c10::IValue step, r;
  a.read("step", step);
  st->step = step.toInt();
  torch::Tensor fixed;
  a.read("fixed", fixed);
  st->fixed.clear();
  if (!(fixed.numel() == 1 && fixed.item<std::int64_t>() == -1)) {
    for (std::int64_t i = 0; i < fixed.numel(); ++i) st->fixed.push_back(fixed[i].item<std::int64_t>());
  }
  a.read("rng", r);
  std::istringstream in(r.toStringRef());
  in >> *rng;
}

}  // namespace

Metrics evaluate_lm(QuantModelImpl& model, const std::vector<std::uint8_t>& text, std::int64_t seq, std::int64_t batches,
                    std::int64_t batch) {
  torch::NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  const std::int64_t len = std::min<std::int64_t>(seq + 1, static_cast<std::int64_t>(text.size()));
  if (len < 2) throw std::runtime_error("text too short to evaluate");
  const std::int64_t span = static_cast<std::int64_t>(text.size()) - len;
  std::vector<std::int64_t> all;
  if (batches > 0) {
    const std::int64_t total = batches * batch;
    for (std::int64_t k = 0; k < total; ++k) all.push_back(total > 1 ? span * k / (total - 1) : 0);  // evenly spread
  } else {
    for (std::int64_t s0 = 0; s0 <= span; s0 += len - 1) all.push_back(s0);  // every byte after the first scored once
  }
  double sum = 0;
  for (std::size_t i = 0; i < all.size(); i += static_cast<std::size_t>(batch)) {
    const std::vector<std::int64_t> starts(all.begin() + static_cast<std::ptrdiff_t>(i),
                                           all.begin() + static_cast<std::ptrdiff_t>(std::min(all.size(), i + static_cast<std::size_t>(batch))));
    sum += lm_loss(model, windows(text, starts, len)).item<double>() * static_cast<double>(starts.size());
  }
  if (was_training) model.train();
  Metrics m;
  m.loss = sum / static_cast<double>(all.size());
  m.units = static_cast<std::int64_t>(all.size()) * (len - 1);
  return m;
}

Metrics evaluate_classifier(QuantModelImpl& model, const torch::Tensor& images, const torch::Tensor& labels) {
  torch::NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  double loss = 0;
  std::int64_t correct = 0;
  const std::int64_t n = images.size(0);
  for (std::int64_t i = 0; i < n; i += 1000) {
    const std::int64_t e = std::min(n, i + 1000);
    const torch::Tensor logits = model.forward(images.slice(0, i, e));
    const torch::Tensor y = labels.slice(0, i, e);
    loss += torch::nn::functional::cross_entropy(logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum)).item<double>();
    correct += logits.argmax(1).eq(y).sum().item<std::int64_t>();
  }
  if (was_training) model.train();
  Metrics m;
  m.loss = loss / static_cast<double>(n);
  m.accuracy = static_cast<double>(correct) / static_cast<double>(n);
  m.units = n;
  return m;
}

namespace {

constexpr std::int64_t kFmnistValid = 5000;  // the last training images

// One IDX pair ("train" or "t10k"), checked: images [n, 784] uint8, labels [n] int64.
std::pair<torch::Tensor, torch::Tensor> read_fmnist(const std::string& data_dir, bool test) {
  const std::string base = data_dir + "/fashion-mnist/" + (test ? "t10k" : "train");
  for (const char* part : {"-images-idx3-ubyte.gz", "-labels-idx1-ubyte.gz"}) {
    if (!std::ifstream(base + part)) {
      throw std::runtime_error(base + part + ": missing; run `mfqat data prepare --data-dir " + data_dir + "` first");
    }
  }
  const data::IdxArray img = data::read_idx(base + "-images-idx3-ubyte.gz"), lab = data::read_idx(base + "-labels-idx1-ubyte.gz");
  if (img.dims.size() != 3 || lab.dims.size() != 1 || img.dims[0] != lab.dims[0] || (!test && img.dims[0] <= kFmnistValid)) {
    throw std::runtime_error(base + ": images and labels do not match");
  }
  const std::int64_t n = img.dims[0], px = img.dims[1] * img.dims[2];
  const torch::Tensor x = torch::from_blob(const_cast<std::uint8_t*>(img.values.data()), {n, px}, torch::kUInt8).clone();
  const torch::Tensor y = torch::from_blob(const_cast<std::uint8_t*>(lab.values.data()), {n}, torch::kUInt8).to(torch::kInt64);
  if (y.max().item<std::int64_t>() > 9) throw std::runtime_error(base + ": label out of range 0..9");
  return {x, y};
}

// Rows [b, e) as normalised floats with Fashion-MNIST's pixel mean and standard deviation
// (over the training set, /255).
std::pair<torch::Tensor, torch::Tensor> fmnist_rows(const std::pair<torch::Tensor, torch::Tensor>& xy, std::int64_t b, std::int64_t e) {
  return {xy.first.slice(0, b, e).to(torch::kFloat32).div_(255.0f).sub_(0.2860f).div_(0.3530f), xy.second.slice(0, b, e)};
}

}  // namespace

namespace {

class LmTask : public Task {
 public:
  LmTask(std::vector<std::uint8_t> train, std::vector<std::uint8_t> valid, std::int64_t seq, std::int64_t eval_batches)
      : train_(std::move(train)), valid_(std::move(valid)), seq_(seq), eval_batches_(eval_batches) {
    if (static_cast<std::int64_t>(train_.size()) <= seq_ + 1) throw std::runtime_error("training text is shorter than one window");
  }
  std::int64_t items() const override { return static_cast<std::int64_t>(train_.size()) - seq_; }
  std::int64_t units_per_item() const override { return seq_; }
  torch::Tensor loss(QuantModelImpl& m, const std::vector<std::int64_t>& items) override {
    return lm_loss(m, windows(train_, items, seq_ + 1));
  }
  Metrics validate(QuantModelImpl& m) override { return evaluate_lm(m, valid_, seq_, eval_batches_); }
  bool has_validation() const override { return !valid_.empty(); }

 private:
  std::vector<std::uint8_t> train_, valid_;
  std::int64_t seq_, eval_batches_;
};

class FmnistTask : public Task {
 public:
  explicit FmnistTask(const std::string& dir) {
    const auto xy = read_fmnist(dir, false);  // one read for both splits
    const std::int64_t n = xy.first.size(0);
    std::tie(x_, y_) = fmnist_rows(xy, 0, n - kFmnistValid);
    std::tie(vx_, vy_) = fmnist_rows(xy, n - kFmnistValid, n);
  }
  std::int64_t items() const override { return x_.size(0); }
  std::int64_t units_per_item() const override { return 1; }
  torch::Tensor loss(QuantModelImpl& m, const std::vector<std::int64_t>& items) override {
    const torch::Tensor idx = torch::tensor(items, torch::kInt64);
    return torch::nn::functional::cross_entropy(m.forward(x_.index_select(0, idx)), y_.index_select(0, idx));
  }
  Metrics validate(QuantModelImpl& m) override { return evaluate_classifier(m, vx_, vy_); }
  bool has_validation() const override { return true; }

 private:
  torch::Tensor x_, y_, vx_, vy_;
};

}  // namespace

std::unique_ptr<Task> lm_task(std::vector<std::uint8_t> train, std::vector<std::uint8_t> valid, std::int64_t seq,
                              std::int64_t eval_batches) {
  return std::make_unique<LmTask>(std::move(train), std::move(valid), seq, eval_batches);
}

std::unique_ptr<Task> fmnist_task(const std::string& data_dir) { return std::make_unique<FmnistTask>(data_dir); }

std::pair<torch::Tensor, torch::Tensor> fmnist_split(const std::string& data_dir, const std::string& split) {
  const bool test = split == "test";
  if (!test && split != "train" && split != "valid") throw std::invalid_argument("unknown split '" + split + "' (train, valid, test)");
  const auto xy = read_fmnist(data_dir, test);
  const std::int64_t n = xy.first.size(0);
  return fmnist_rows(xy, split == "valid" ? n - kFmnistValid : 0, split == "train" ? n - kFmnistValid : n);
}

double train_step(QuantModelImpl& model, Task& task, const std::vector<std::int64_t>& items,
                  const std::vector<std::optional<mx::Format>>& run, torch::optim::Optimizer& opt, double clip, Ste ste, Comm* comm,
                  double share, std::int64_t step) {
  opt.zero_grad();
  double loss_sum = 0;
  for (const auto& f : run) {
    FakeQuantOptions fq;
    fq.ste = ste;
    model.set_format(f, fq);
    torch::Tensor loss = task.loss(model, items) * (share / static_cast<double>(run.size()));
    loss.backward();
    loss_sum += loss.item<double>();
  }
  model.set_format(std::nullopt);
  if (comm) loss_sum = comm->allreduce_gradients(model.parameters(), loss_sum, step);
  torch::nn::utils::clip_grad_norm_(model.parameters(), clip);
  opt.step();
  return loss_sum;
}

namespace {

// Every rank must run the same loop from the same weights: rank 0's step, options and seed are
// broadcast and compared (a rank resumed from another state file, or started with other
// options, stops with a message), then rank 0's weights overwrite the others'.
void check_replicas(QuantModelImpl& model, Comm& comm, std::int64_t step, const TrainOptions& o) {
  std::string fmts = o.mode + "/" + o.strategy;
  for (const auto& f : o.formats) fmts += "/" + f.name;
  const std::vector<std::pair<const char*, double>> mine = {
      {"the resumed step", static_cast<double>(step)},
      {"--steps", static_cast<double>(o.steps)},
      {"--batch", static_cast<double>(o.batch)},
      {"--seed", static_cast<double>(o.seed)},
      {"--lr", o.lr},
      {"the mode/strategy/formats", static_cast<double>(std::hash<std::string>{}(fmts) % (1ULL << 52))},
      {"--train-sequences", static_cast<double>(o.train_sequences)},
  };
  torch::Tensor t = torch::empty({static_cast<std::int64_t>(mine.size())}, torch::kFloat64);
  for (std::size_t i = 0; i < mine.size(); ++i) t[static_cast<std::int64_t>(i)] = mine[i].second;
  comm.broadcast({t}, "the run's options");
  for (std::size_t i = 0; i < mine.size(); ++i) {
    const double r0 = t[static_cast<std::int64_t>(i)].item<double>();
    if (r0 != mine[i].second) {
      throw std::runtime_error(fmt::format("rank {}: {} is {} here but {} on rank 0; every rank must run the same job", comm.rank(),
                                           mine[i].first, mine[i].second, r0));
    }
  }
  std::vector<torch::Tensor> ps;
  for (const auto& p : model.parameters()) ps.push_back(p);
  comm.broadcast(ps, "the initial weights");
}

}  // namespace

TrainResult train(QuantModelImpl& model, Task& task, const TrainOptions& o, const Log& log) {
  if (o.mode != "fp32" && o.mode != "sf" && o.mode != "mf") throw std::invalid_argument("unknown mode '" + o.mode + "' (fp32, sf, mf)");
  if (o.mode == "sf" && o.formats.size() != 1) throw std::invalid_argument("mode sf needs exactly one --format");
  if (o.mode == "mf" && o.formats.size() < 2) throw std::invalid_argument("mode mf needs at least two --formats");
  if (o.mode == "mf" && o.strategy != "joint" && o.strategy != "cycle" && o.strategy != "random") {
    throw std::invalid_argument("unknown strategy '" + o.strategy + "' (joint, cycle, random)");
  }
  if (!o.weights.empty() && o.weights.size() != o.formats.size()) throw std::invalid_argument("--weights needs one weight per format");
  if (o.steps < 1 || o.batch < 1) throw std::invalid_argument("steps and batch must be positive");
  std::mt19937_64 rng(o.seed);
  torch::manual_seed(o.seed);
  std::uniform_int_distribution<std::int64_t> pick(0, task.items() - 1);
  LoopState st;
  for (std::int64_t i = 0; i < o.train_sequences; ++i) st.fixed.push_back(pick(rng));  // the QAT fine-tune set
  const std::vector<std::int64_t>& fixed = st.fixed;

  torch::optim::AdamW adam(model.parameters(), torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay).betas({0.9, 0.95}));
  if (o.resume) {
    load_state(model, adam, &st, &rng, o.state_path);
    log("resuming at step " + std::to_string(st.step) + " from " + o.state_path);
  }
  const int world = o.comm ? o.comm->size() : 1, rank = o.comm ? o.comm->rank() : 0;
  if (o.batch < world) throw std::invalid_argument("--batch " + std::to_string(o.batch) + " is smaller than the world size " + std::to_string(world));
  if (o.comm) check_replicas(model, *o.comm, st.step, o);
  const bool lead = rank == 0;  // validates, writes state and metrics, shows progress
  const std::vector<double> fw = o.weights.empty() ? std::vector<double>(o.formats.size(), 1.0) : o.weights;
  std::discrete_distribution<std::size_t> fmt_pick(fw.begin(), fw.end());
  std::ofstream metrics;
  if (lead && !o.metrics_path.empty()) {
    metrics.open(o.metrics_path, o.resume ? std::ios::app : std::ios::trunc);
    if (!metrics) throw std::runtime_error(o.metrics_path + ": cannot write metrics");
  }
  TrainResult res;
  const bool tty = ::isatty(2);  // redraw one line on a terminal, print every 10 % elsewhere
  const auto t0 = std::chrono::steady_clock::now();
  model.train();
  const std::int64_t first_step = st.step;
  res.steps = st.step;  // a state saved at the last step resumes with no step left to run
  std::int64_t saved_step = o.resume ? st.step : 0;  // the step of the state file on disk (0: none)
  for (std::int64_t step = first_step; step < o.steps; ++step) {
    std::vector<std::int64_t> starts;
    for (std::int64_t b = 0; b < o.batch; ++b) {
      starts.push_back(fixed.empty() ? pick(rng) : fixed[static_cast<std::size_t>((step * o.batch + b) % o.train_sequences)]);
    }
    const double lr = lr_at(o, step);
    for (auto& g : adam.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    // Which formats this step runs: fp32 none; sf one; mf joint all (gradients averaged),
    // cycle one in order, random one sampled.
    std::vector<std::optional<mx::Format>> run;
    if (o.mode == "fp32") {
      run.push_back(std::nullopt);
    } else if (o.mode == "sf") {
      run.push_back(o.formats[0]);
    } else if (o.strategy == "joint") {
      for (const auto& f : o.formats) run.push_back(f);
    } else if (o.strategy == "cycle") {
      run.push_back(o.formats[static_cast<std::size_t>(step) % o.formats.size()]);
    } else {
      run.push_back(o.formats[fmt_pick(rng)]);
    }
    std::vector<std::int64_t> mine;  // this rank's share of the global batch
    for (std::size_t b = static_cast<std::size_t>(rank); b < starts.size(); b += static_cast<std::size_t>(world)) mine.push_back(starts[b]);
    const double share = static_cast<double>(mine.size()) / static_cast<double>(starts.size());
    const double loss_sum = train_step(model, task, mine, run, adam, o.clip, o.ste, o.comm, share, step + 1);
    if (!std::isfinite(loss_sum)) {
      // Stop before anything is saved: the last good state (if any) stays as it was.
      const std::string culprit = first_non_finite(model);
      throw std::runtime_error("loss is not finite at step " + std::to_string(step + 1) +
                               (culprit.empty() ? " (weights and gradients finite: the activations overflowed)" : " (" + culprit + " is not finite)") +
                               (saved_step == 0 ? std::string() : "; last good state: " + o.state_path + " at step " + std::to_string(saved_step)));
    }
    if (step == first_step) res.first_loss = loss_sum;
    res.last_loss = loss_sum;
    res.steps = step + 1;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double tps = static_cast<double>((step + 1 - first_step) * o.batch * task.units_per_item()) / secs;
    std::optional<Metrics> v;
    if (lead && task.has_validation() && o.eval_every > 0 && (step + 1) % o.eval_every == 0 && step + 1 < o.steps) v = task.validate(model);
    if (metrics.is_open()) {
      nlohmann::json j = {{"step", step + 1}, {"loss", loss_sum}, {"lr", lr}, {"tokens_per_s", tps}, {"seconds", secs}};
      if (v) j["valid_loss"] = v->loss;
      if (v && v->accuracy >= 0) j["valid_accuracy"] = v->accuracy;
      metrics << j.dump() << "\n" << std::flush;
    }
    if (lead && o.progress && (tty || (step + 1) % std::max<std::int64_t>(1, o.steps / 10) == 0 || step + 1 == o.steps)) {
      const double eta = secs / static_cast<double>(step + 1 - first_step) * static_cast<double>(o.steps - step - 1);
      const int width = 24, filled = static_cast<int>(width * (step + 1) / o.steps);
      std::fprintf(stderr, "\r[%s%s] %lld/%lld loss %.4f  %.0f %s/s  ETA %.0fs   ", std::string(filled, '#').c_str(),
                   std::string(width - filled, '.').c_str(), static_cast<long long>(step + 1), static_cast<long long>(o.steps),
                   loss_sum, tps, task.units_per_item() == 1 ? "ex" : "tok", eta);
      if (!tty) std::fprintf(stderr, "\n");
    }
    res.tokens_per_s = tps;
    res.seconds = secs;
    st.step = step + 1;
    const bool stopping = o.stop_after > 0 && st.step - first_step >= o.stop_after && st.step < o.steps;
    if (!o.state_path.empty() && (stopping || st.step == o.steps || (o.save_every > 0 && st.step % o.save_every == 0))) {
      if (lead) save_state(model, adam, st, rng, o.state_path);
      saved_step = st.step;  // rank 0's state file, named in every rank's messages
    }
    if (stopping) {
      if (o.progress && tty) std::fprintf(stderr, "\n");
      throw std::runtime_error("stopped after step " + std::to_string(st.step) + " (--stop-after); resume with --resume");
    }
  }
  if (lead && o.progress && tty) std::fprintf(stderr, "\n");
  if (o.comm) res.comm_seconds = o.comm->comm_seconds();
  if (!lead) return res;
  std::string vs;
  if (task.has_validation()) {
    const Metrics v = task.validate(model);
    res.valid_loss = v.loss;
    res.valid_accuracy = v.accuracy;
    vs = v.accuracy >= 0 ? fmt::format(", valid loss {:.4f}, accuracy {:.2f} %", v.loss, 100 * v.accuracy)
                         : fmt::format(", valid loss {:.4f} ({:.3f} bits/byte)", v.loss, v.loss / std::log(2.0));
  }
  log(fmt::format("trained {} steps in {:.1f}s ({:.0f} {}/s): loss {:.4f} -> {:.4f}{}", res.steps, res.seconds, res.tokens_per_s,
                  task.units_per_item() == 1 ? "examples" : "tokens", res.first_loss, res.last_loss, vs));
  if (o.comm) {
    log(fmt::format("data parallel over {} ranks: gradient all-reduce {:.2f}s in all ({:.1f} ms per step, {:.1f} % of the time)", world,
                    res.comm_seconds, 1000 * res.comm_seconds / static_cast<double>(std::max<std::int64_t>(1, res.steps - first_step)),
                    100 * res.comm_seconds / std::max(1e-9, res.seconds)));
  }
  return res;
}

void save_checkpoint(QuantModelImpl& model, const std::string& path, const std::map<std::string, std::string>& extra) {
  ckpt::SafetensorsWriter w;
  for (const auto& p : model.named_parameters()) {
    const torch::Tensor t = p.value().detach().contiguous();
    w.add_f32(p.key(), t.sizes().vec(), {t.data_ptr<float>(), static_cast<std::size_t>(t.numel())});
  }
  w.set_metadata(ckpt::kModelConfigKey, model.model_config().to_json());
  for (const auto& [k, v] : extra) w.set_metadata(k, v);
  w.write(path);
}

ModelConfig checkpoint_config(const std::string& path) { return model::read_config(ckpt::SafetensorsFile::open(path)); }

void load_weights(QuantModelImpl& m, const model::Checkpoint& ck, const std::optional<mx::Format>& target) {
  torch::NoGradGuard ng;
  auto named = m.named_parameters();
  for (auto& p : named) {
    const model::Param* spec = ck.find_param(p.key());
    if (!spec) throw std::runtime_error(ck.path() + ": tensor '" + p.key() + "' is missing (the checkpoint is for another model)");
    if (spec->shape != p.value().sizes().vec()) {
      std::string want = "[";
      for (auto d : p.value().sizes()) want += std::to_string(d) + ",";
      want.back() = ']';
      throw std::runtime_error(ck.path() + ": tensor '" + p.key() + "' has another shape than the model's " + want);
    }
    const std::vector<float> v = ck.values(*spec, spec->quantized ? target : std::nullopt);
    std::memcpy(p.value().data_ptr<float>(), v.data(), v.size() * sizeof(float));
  }
  if (named.size() != ck.params().size()) throw std::runtime_error(ck.path() + ": has parameters the model does not have");
}

void load_checkpoint(QuantModelImpl& m, const std::string& path) { load_weights(m, model::Checkpoint::open(path)); }

}  // namespace mfqat::train
