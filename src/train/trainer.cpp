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

namespace mfqat::train {

namespace {

std::vector<std::uint8_t> load_text(const std::string& path) {
  auto t = ckpt::read_file(path);
  if (t.size() < 2) throw std::runtime_error(path + ": text too short to train on");
  return t;
}

// [B, T+1] windows starting at the given offsets.
torch::Tensor windows(const std::vector<std::uint8_t>& text, const std::vector<std::int64_t>& starts, std::int64_t len) {
  torch::Tensor out = torch::empty({static_cast<std::int64_t>(starts.size()), len}, torch::kInt64);
  auto a = out.accessor<std::int64_t, 2>();
  for (std::size_t b = 0; b < starts.size(); ++b) {
    for (std::int64_t i = 0; i < len; ++i) a[b][i] = text[starts[b] + i];
  }
  return out;
}

torch::Tensor lm_loss(TransformerLm& m, const torch::Tensor& win) {
  const std::int64_t T = win.size(1) - 1;
  const torch::Tensor logits = m->forward(win.slice(1, 0, T));
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

// Atomic: serialise to PATH.tmp, then rename over PATH.
void save_state(TransformerLm& model, const torch::optim::AdamW& adam, const LoopState& st, const std::mt19937_64& rng,
                const std::string& path) {
  torch::serialize::OutputArchive a;
  for (const auto& p : model->named_parameters()) a.write("param/" + p.key(), p.value().detach());
  torch::serialize::OutputArchive opt;
  adam.save(opt);
  a.write("optimizer", opt);
  a.write("step", c10::IValue(st.step));
  a.write("fixed", torch::tensor(st.fixed.empty() ? std::vector<std::int64_t>{-1} : st.fixed, torch::kInt64));
  std::ostringstream r;
  r << rng;
  a.write("rng", c10::IValue(r.str()));
  a.write("config", c10::IValue(model->config().to_json()));
  const std::string tmp = path + ".tmp";
  a.save_to(tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error(path + ": cannot rename the training state into place");
}

void load_state(TransformerLm& model, torch::optim::AdamW& adam, LoopState* st, std::mt19937_64* rng, const std::string& path) {
  if (!std::ifstream(path)) throw std::runtime_error(path + ": no training state to resume from");
  torch::serialize::InputArchive a;
  try {
    a.load_from(path);
  } catch (const c10::Error&) {
    throw std::runtime_error(path + ": not a readable training state");
  }
  c10::IValue cfg;
  a.read("config", cfg);
  if (cfg.toStringRef() != model->config().to_json()) throw std::runtime_error(path + ": training state is for another model config");
  torch::NoGradGuard ng;
  for (auto& p : model->named_parameters()) {
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

double evaluate(TransformerLm& model, const std::vector<std::uint8_t>& text, std::int64_t seq, std::int64_t batches,
                std::int64_t batch) {
  torch::NoGradGuard ng;
  model->eval();
  const std::int64_t len = std::min<std::int64_t>(seq + 1, static_cast<std::int64_t>(text.size()));
  const std::int64_t span = static_cast<std::int64_t>(text.size()) - len;
  double sum = 0;
  std::int64_t n = 0;
  for (std::int64_t b = 0; b < batches; ++b) {
    std::vector<std::int64_t> starts;
    for (std::int64_t i = 0; i < batch; ++i) {
      const std::int64_t k = b * batch + i, total = batches * batch;
      starts.push_back(total > 1 ? span * k / (total - 1) : 0);  // evenly spread, deterministic
    }
    sum += lm_loss(model, windows(text, starts, len)).item<double>();
    ++n;
  }
  model->train();
  return sum / static_cast<double>(n);
}

TrainResult train(TransformerLm& model, const TrainOptions& o, const Log& log) {
  if (o.mode != "fp32" && o.mode != "sf" && o.mode != "mf") throw std::invalid_argument("unknown mode '" + o.mode + "' (fp32, sf, mf)");
  if (o.mode == "sf" && o.formats.size() != 1) throw std::invalid_argument("mode sf needs exactly one --format");
  if (o.mode == "mf" && o.formats.size() < 2) throw std::invalid_argument("mode mf needs at least two --formats");
  if (o.mode == "mf" && o.strategy != "joint" && o.strategy != "cycle" && o.strategy != "random") {
    throw std::invalid_argument("unknown strategy '" + o.strategy + "' (joint, cycle, random)");
  }
  if (!o.weights.empty() && o.weights.size() != o.formats.size()) throw std::invalid_argument("--weights needs one weight per format");
  if (o.steps < 1 || o.batch < 1 || o.seq < 1 || o.seq > model->config().max_seq) {
    throw std::invalid_argument("bad steps/batch/seq (seq must be 1.." + std::to_string(model->config().max_seq) + ")");
  }
  const auto text = load_text(o.train_text);
  const std::vector<std::uint8_t> valid = o.valid_text.empty() ? std::vector<std::uint8_t>{} : load_text(o.valid_text);
  const std::int64_t len = o.seq + 1;
  if (static_cast<std::int64_t>(text.size()) <= len) throw std::runtime_error(o.train_text + ": shorter than one window");
  std::mt19937_64 rng(o.seed);
  torch::manual_seed(o.seed);
  std::uniform_int_distribution<std::int64_t> pick(0, static_cast<std::int64_t>(text.size()) - len);
  LoopState st;
  for (std::int64_t i = 0; i < o.train_sequences; ++i) st.fixed.push_back(pick(rng));  // the QAT fine-tune set
  const std::vector<std::int64_t>& fixed = st.fixed;

  torch::optim::AdamW adam(model->parameters(), torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay).betas({0.9, 0.95}));
  if (o.resume) {
    load_state(model, adam, &st, &rng, o.state_path);
    log("resuming at step " + std::to_string(st.step) + " from " + o.state_path);
  }
  const std::vector<double> fw = o.weights.empty() ? std::vector<double>(o.formats.size(), 1.0) : o.weights;
  std::discrete_distribution<std::size_t> fmt_pick(fw.begin(), fw.end());
  std::ofstream metrics;
  if (!o.metrics_path.empty()) {
    metrics.open(o.metrics_path, o.resume ? std::ios::app : std::ios::trunc);
    if (!metrics) throw std::runtime_error(o.metrics_path + ": cannot write metrics");
  }
  TrainResult res;
  const bool tty = ::isatty(2);  // redraw one line on a terminal, print every 10 % elsewhere
  const auto t0 = std::chrono::steady_clock::now();
  model->train();
  const std::int64_t first_step = st.step;
  for (std::int64_t step = first_step; step < o.steps; ++step) {
    std::vector<std::int64_t> starts;
    for (std::int64_t b = 0; b < o.batch; ++b) {
      starts.push_back(fixed.empty() ? pick(rng) : fixed[static_cast<std::size_t>((step * o.batch + b) % o.train_sequences)]);
    }
    const torch::Tensor win = windows(text, starts, len);
    const double lr = lr_at(o, step);
    for (auto& g : adam.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    adam.zero_grad();
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
    double loss_sum = 0;
    for (const auto& f : run) {
      FakeQuantOptions fq;
      fq.ste = o.ste;
      model->set_format(f, fq);
      torch::Tensor loss = lm_loss(model, win) / static_cast<double>(run.size());
      loss.backward();
      loss_sum += loss.item<double>();
    }
    model->set_format(std::nullopt);
    torch::nn::utils::clip_grad_norm_(model->parameters(), o.clip);
    adam.step();
    if (!std::isfinite(loss_sum)) throw std::runtime_error("loss is not finite at step " + std::to_string(step));
    if (step == first_step) res.first_loss = loss_sum;
    res.last_loss = loss_sum;
    res.steps = step + 1;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double tps = static_cast<double>((step + 1 - first_step) * o.batch * o.seq) / secs;
    double vloss = -1;
    if (!valid.empty() && o.eval_every > 0 && (step + 1) % o.eval_every == 0 && step + 1 < o.steps) {
      vloss = evaluate(model, valid, o.seq, o.eval_batches);
    }
    if (metrics.is_open()) {
      nlohmann::json j = {{"step", step + 1}, {"loss", loss_sum}, {"lr", lr}, {"tokens_per_s", tps}, {"seconds", secs}};
      if (vloss >= 0) j["valid_loss"] = vloss;
      metrics << j.dump() << "\n" << std::flush;
    }
    if (o.progress && (tty || (step + 1) % std::max<std::int64_t>(1, o.steps / 10) == 0 || step + 1 == o.steps)) {
      const double eta = secs / static_cast<double>(step + 1 - first_step) * static_cast<double>(o.steps - step - 1);
      const int width = 24, filled = static_cast<int>(width * (step + 1) / o.steps);
      std::fprintf(stderr, "\r[%s%s] %lld/%lld loss %.4f  %.0f tok/s  ETA %.0fs   ", std::string(filled, '#').c_str(),
                   std::string(width - filled, '.').c_str(), static_cast<long long>(step + 1), static_cast<long long>(o.steps),
                   loss_sum, tps, eta);
      if (!tty) std::fprintf(stderr, "\n");
    }
    res.tokens_per_s = tps;
    res.seconds = secs;
    st.step = step + 1;
    const bool stopping = o.stop_after > 0 && st.step - first_step >= o.stop_after && st.step < o.steps;
    if (!o.state_path.empty() && (stopping || st.step == o.steps || (o.save_every > 0 && st.step % o.save_every == 0))) {
      save_state(model, adam, st, rng, o.state_path);
    }
    if (stopping) {
      if (o.progress && tty) std::fprintf(stderr, "\n");
      throw std::runtime_error("stopped after step " + std::to_string(st.step) + " (--stop-after); resume with --resume");
    }
  }
  if (o.progress && tty) std::fprintf(stderr, "\n");
  if (!valid.empty()) res.valid_loss = evaluate(model, valid, o.seq, o.eval_batches);
  log(fmt::format("trained {} steps in {:.1f}s ({:.0f} tokens/s): loss {:.4f} -> {:.4f}{}", res.steps, res.seconds,
                  res.tokens_per_s, res.first_loss, res.last_loss,
                  valid.empty() ? "" : fmt::format(", valid loss {:.4f} ({:.3f} bits/byte)", res.valid_loss, res.valid_loss / std::log(2.0))));
  return res;
}

void save_checkpoint(TransformerLm& model, const std::string& path, const std::map<std::string, std::string>& extra) {
  ckpt::SafetensorsWriter w;
  for (const auto& p : model->named_parameters()) {
    const torch::Tensor t = p.value().detach().contiguous();
    w.add_f32(p.key(), t.sizes().vec(), {t.data_ptr<float>(), static_cast<std::size_t>(t.numel())});
  }
  w.set_metadata(ckpt::kModelConfigKey, model->config().to_json());
  for (const auto& [k, v] : extra) w.set_metadata(k, v);
  w.write(path);
}

LmConfig checkpoint_config(const std::string& path) {
  const auto f = ckpt::SafetensorsFile::open(path);
  const auto it = f.metadata().find(ckpt::kModelConfigKey);
  if (it == f.metadata().end()) throw std::runtime_error(path + ": no model config in the metadata (not an mfqat model checkpoint)");
  return LmConfig::from_json(it->second, path + " [model_config]");
}

void load_checkpoint(TransformerLm& model, const std::string& path) {
  const auto f = ckpt::SafetensorsFile::open(path);
  torch::NoGradGuard ng;
  for (auto& p : model->named_parameters()) {
    const ckpt::TensorInfo* t = f.find(p.key());
    if (!t) throw std::runtime_error(path + ": tensor '" + p.key() + "' is missing");
    if (t->dtype != ckpt::DType::F32 || t->shape != p.value().sizes().vec()) {
      std::string want = "[";
      for (auto d : p.value().sizes()) want += std::to_string(d) + ",";
      throw std::runtime_error(path + ": tensor '" + p.key() + "' has another dtype or shape than the model's " + want + "] F32");
    }
    const auto d = f.data(*t);
    std::memcpy(p.value().data_ptr<float>(), d.data(), d.size());
  }
}

}  // namespace mfqat::train

namespace mfqat::train {

TrainSummary run_train(const TrainJob& job, const std::function<void(const std::string&)>& log) {
  if (job.output.empty()) throw std::invalid_argument("--output is required");
  LmConfig cfg;
  if (!job.config.empty()) {
    const auto bytes = ckpt::read_file(job.config);
    cfg = LmConfig::from_json(std::string(bytes.begin(), bytes.end()), job.config);
  } else if (!job.init.empty()) {
    cfg = checkpoint_config(job.init);
  }
  TrainOptions o;
  o.mode = job.mode;
  if (job.mode == "sf") {
    if (job.format.empty()) throw std::invalid_argument("mode sf needs --format");
    o.formats = {mx::find_format(job.format)};
  } else if (job.mode == "mf") {
    if (job.formats.empty()) throw std::invalid_argument("mode mf needs --formats");
    o.formats = mx::parse_format_list(job.formats);
  }
  o.strategy = job.strategy;
  if (!job.weights.empty()) {
    std::size_t pos = 0;
    while (pos < job.weights.size()) {
      std::size_t used = 0;
      o.weights.push_back(std::stod(job.weights.substr(pos), &used));
      pos += used + 1;
    }
  }
  if (job.ste == "clipped") {
    o.ste = Ste::Clipped;
  } else if (job.ste != "plain") {
    throw std::invalid_argument("unknown --ste '" + job.ste + "' (plain, clipped)");
  }
  o.train_text = job.data_dir + "/austen/train.txt";
  o.valid_text = job.data_dir + "/austen/valid.txt";
  for (const auto& p : {o.train_text, o.valid_text}) {
    if (!std::ifstream(p)) throw std::runtime_error(p + ": missing; run `mfqat data prepare --data-dir " + job.data_dir + "` first");
  }
  o.init = job.init;
  o.steps = job.steps;
  o.batch = job.batch;
  o.seq = job.seq;
  // QAT fine-tunes on a small fixed set (128 sequences) unless told otherwise; pretraining samples freely.
  o.train_sequences = job.train_sequences >= 0 ? job.train_sequences : (job.mode == "fp32" ? 0 : 128);
  o.warmup = job.warmup;
  o.lr = job.lr;
  o.weight_decay = job.weight_decay;
  o.clip = job.clip;
  o.seed = job.seed;
  o.eval_every = job.eval_every;
  o.eval_batches = job.eval_batches;
  o.metrics_path = job.metrics;
  o.progress = job.progress;
  o.state_path = job.output + ".state";
  o.save_every = job.save_every;
  o.resume = job.resume;
  o.stop_after = job.stop_after;
  if (job.threads > 0) at::set_num_threads(job.threads);
  torch::manual_seed(job.seed);
  TransformerLm model(cfg);
  if (!job.init.empty()) load_checkpoint(model, job.init);
  const TrainSummary r = train(model, o, log);
  save_checkpoint(model, job.output,
                  {{"mfqat.train", nlohmann::json{{"mode", job.mode}, {"formats", job.mode == "sf" ? job.format : job.formats},
                                                  {"strategy", job.strategy}, {"steps", r.steps}, {"seed", job.seed},
                                                  {"valid_loss", r.valid_loss}}.dump()}});
  return r;
}

}  // namespace mfqat::train
