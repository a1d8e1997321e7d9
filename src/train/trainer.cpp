// The training loop: options checked, the learning-rate schedule, which formats each step runs
// (fp32, sf, mf joint / cycle / random), the data-parallel share of each batch, metrics and
// progress, the resumable state saved and stopped on (checkpoints.cpp), a non-finite loss named.
// What is trained on: tasks.cpp.
#include "mfqat/train/trainer.h"

#include <fmt/core.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>

#include "train_state.h"

namespace mfqat::train {

using detail::LoopState;
using detail::load_state;
using detail::save_state;

namespace {

double lr_at(const TrainOptions& o, std::int64_t step) {
  if (step < o.warmup) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup);
  const double p = o.steps > o.warmup ? static_cast<double>(step - o.warmup) / static_cast<double>(o.steps - o.warmup) : 1.0;
  return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * std::min(1.0, p))));
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

}  // namespace

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

}  // namespace mfqat::train
