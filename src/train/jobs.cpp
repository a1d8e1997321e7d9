// The CLI's training and evaluation jobs (api.h): option checks, data, model, checkpoints.
#include <fmt/core.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "mfqat/ckpt/file.h"
#include "mfqat/hf/tokenizer.h"
#include "mfqat/model/checkpoint.h"
#include "mfqat/train/dist.h"
#include "mfqat/train/trainer.h"

namespace mfqat::train {

namespace {

std::vector<std::uint8_t> load_text(const std::string& path, const std::string& data_dir) {
  if (!std::ifstream(path)) throw std::runtime_error(path + ": missing; run `mfqat data prepare --data-dir " + data_dir + "` first");
  auto t = ckpt::read_file(path);
  if (t.size() < 2) throw std::runtime_error(path + ": text too short");
  return t;
}

std::vector<double> parse_weights(const std::string& s) {
  std::vector<double> out;
  std::size_t pos = 0;
  while (pos < s.size()) {
    std::size_t used = 0;
    try {
      out.push_back(std::stod(s.substr(pos), &used));
    } catch (const std::exception&) {
      throw std::invalid_argument("--weights '" + s + "': not a comma-separated list of numbers");
    }
    if (!(out.back() >= 0)) throw std::invalid_argument("--weights '" + s + "': weights must be >= 0");
    pos += used + 1;
  }
  return out;
}

}  // namespace

TrainSummary run_train(const TrainJob& job, const std::function<void(const std::string&)>& log) {
  if (job.output.empty()) throw std::invalid_argument("--output is required");
  // the starting checkpoint (or Hugging Face directory), opened once: its config, tokenizer, weights
  std::optional<model::Checkpoint> init;
  if (!job.init.empty()) init.emplace(model::Checkpoint::open(job.init));
  ModelConfig cfg;
  if (!job.config.empty()) {
    const auto bytes = ckpt::read_file(job.config);
    cfg = ModelConfig::from_json(std::string(bytes.begin(), bytes.end()), job.config);
  } else if (init) {
    cfg = init->config();
  } else if (job.model == "mlp") {
    cfg = ModelConfig::default_mlp();
  } else if (job.model != "lm") {
    throw std::invalid_argument("unknown --model '" + job.model + "' (lm, mlp)");
  }
  const bool lm = cfg.kind == model::Kind::Lm;
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
  if (!job.weights.empty()) o.weights = parse_weights(job.weights);
  if (job.ste == "clipped") {
    o.ste = Ste::Clipped;
  } else if (job.ste != "plain") {
    throw std::invalid_argument("unknown --ste '" + job.ste + "' (plain, clipped)");
  }
  std::unique_ptr<Task> task;
  std::optional<std::string> tokenizer_json;  // a model imported with its tokenizer trains on its ids
  if (init) tokenizer_json = init->tokenizer_json();
  if (lm) {
    std::vector<std::uint8_t> train_text, valid_text;
    if (!job.text.empty()) {
      const auto t = ckpt::read_file(job.text);
      const std::size_t cut = t.size() - t.size() / 10;  // the last tenth validates
      train_text.assign(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(cut));
      valid_text.assign(t.begin() + static_cast<std::ptrdiff_t>(cut), t.end());
    } else {
      train_text = load_text(job.data_dir + "/austen/train.txt", job.data_dir);
      valid_text = load_text(job.data_dir + "/austen/valid.txt", job.data_dir);
    }
    if (tokenizer_json) {
      const hf::Tokenizer tok = hf::Tokenizer::from_json(*tokenizer_json, job.init + " (tokenizer.json)");
      auto encode = [&](const std::vector<std::uint8_t>& b, const std::string& what) {
        try {
          const auto ids = tok.encode(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
          return std::vector<std::int32_t>(ids.begin(), ids.end());
        } catch (const hf::TokenizerError& e) {
          throw std::invalid_argument(what + ": " + e.what());
        }
      };
      const std::string src = job.text.empty() ? job.data_dir + "/austen" : job.text;
      task = lm_task(encode(train_text, src), encode(valid_text, src + " (held-out tenth)"), job.seq, job.eval_batches);
    } else {
      task = lm_task(std::move(train_text), std::move(valid_text), job.seq, job.eval_batches);
    }
  } else {
    task = fmnist_task(job.data_dir);
  }
  if (lm && (job.seq < 1 || job.seq > cfg.lm.max_seq)) {
    throw std::invalid_argument("--seq " + std::to_string(job.seq) + " is out of range 1.." + std::to_string(cfg.lm.max_seq) + " (max_seq)");
  }
  o.steps = job.steps;
  o.batch = job.batch > 0 ? job.batch : (lm ? 16 : 128);
  // LM QAT fine-tunes on a small fixed set (128 sequences, as the paper's 128 WikiText-2
  // examples) unless told otherwise; pretraining and the classifier sample the whole training set.
  o.train_sequences = job.train_sequences >= 0 ? job.train_sequences : (job.mode != "fp32" && lm ? 128 : 0);
  o.warmup = job.warmup;
  o.lr = job.lr;
  o.weight_decay = job.weight_decay;
  o.clip = job.clip;
  o.seed = job.seed;
  o.eval_every = job.eval_every;
  o.metrics_path = job.metrics;
  o.progress = job.progress;
  o.state_path = job.output + ".state";
  o.save_every = job.save_every;
  o.resume = job.resume;
  o.stop_after = job.stop_after;
  if (job.threads > 0) at::set_num_threads(job.threads);
  torch::manual_seed(job.seed);
  const auto m = make_model(cfg);
  if (init) load_weights(*m, *init);
  const bool lead = job.rank == 0;
  if (lead) {  // fail now, not after the training, when the checkpoint cannot be written
    ckpt::check_writable(job.output);
    ckpt::check_writable(o.state_path);
  }
  std::unique_ptr<Comm> comm;
  if (job.world_size > 1 || job.rank != 0) {
    DistOptions d;
    d.world_size = job.world_size;
    d.rank = job.rank;
    d.master = job.master;
    d.timeout_s = job.dist_timeout;
    comm = Comm::connect(d);
    o.comm = comm.get();
  }
  const Log quiet = [](const std::string&) {};
  const TrainSummary r = train(*m, *task, o, lead ? log : quiet);
  if (!lead) return r;  // rank 0 writes the checkpoint
  nlohmann::json meta = {{"mode", job.mode},
                         {"formats", job.mode == "sf" ? job.format : job.formats},
                         {"strategy", job.strategy},
                         {"steps", r.steps},
                         {"seed", job.seed},
                         {"valid_loss", r.valid_loss}};
  if (r.valid_accuracy >= 0) meta["valid_accuracy"] = r.valid_accuracy;
  std::map<std::string, std::string> extra = {{"mfqat.train", meta.dump()}};
  if (init && tokenizer_json) {  // the chat template travels with the tokenizer
    if (const auto tc = init->tokenizer_config_json()) {
      if (const auto chat = model::chat_subset_of_tokenizer_config(*tc)) extra[model::kTokenizerConfigKey] = *chat;
    }
  }
  save_checkpoint(*m, job.output, extra, tokenizer_json);
  return r;
}

std::vector<EvalRow> run_eval(const EvalJob& job, const std::function<void(const EvalRow&)>& row_done) {
  const model::Checkpoint ck = model::Checkpoint::open(job.model);
  const std::string from = job.from.empty() ? (ck.is_anchor() ? "anchor" : "master") : job.from;
  if (from != "master" && from != "anchor") throw std::invalid_argument("--from '" + from + "' is not master or anchor");
  if (from == "anchor" && !ck.is_anchor()) {
    throw std::invalid_argument(job.model + ": an fp32 master, not an anchor; run `mfqat export` first or use --from master");
  }
  if (from == "master" && ck.is_anchor()) {
    throw std::invalid_argument(job.model + ": an " + ck.anchor_format()->name + " anchor; --from master needs the fp32 master");
  }
  std::vector<std::optional<mx::Format>> formats;
  try {
    if (!job.formats.empty() || job.plans.empty()) formats = model::select_formats(job.formats, ck.anchor_format());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(job.model + ": " + e.what());
  }
  const int block = ck.anchor_format() ? ck.anchor_format()->block_size : mx::kDefaultBlockSize;
  std::vector<std::map<std::string, mx::Format>> plan_formats;
  for (const auto& p : job.plans) {
    auto& per = plan_formats.emplace_back();
    for (const auto& [param, f] : p.formats) {
      const model::Param* spec = ck.find_param(param);
      if (!spec) throw std::invalid_argument(p.name + ": no linear '" + param + "' in " + job.model);
      per.emplace(param, mx::find_format(f, block));
    }
  }
  if (job.threads > 0) at::set_num_threads(job.threads);
  const auto m = make_model(ck.config());
  const bool lm = ck.config().kind == model::Kind::Lm;
  std::vector<std::uint8_t> text;
  torch::Tensor images, labels;
  std::int64_t seq = 0;
  if (lm) {
    text = load_text(job.text.empty() ? job.data_dir + "/austen/" + job.split + ".txt" : job.text, job.data_dir);
    seq = job.seq > 0 ? job.seq : ck.config().lm.max_seq;
    if (seq > ck.config().lm.max_seq) throw std::invalid_argument("--seq " + std::to_string(seq) + " exceeds the model's max_seq");
  } else {
    if (!job.text.empty()) throw std::invalid_argument("--text is for language models; " + job.model + " is a classifier");
    std::tie(images, labels) = fmnist_split(job.data_dir, job.split);
  }
  if (from == "master") load_weights(*m, ck);
  std::vector<EvalRow> rows;
  // the model as loaded now, scored into r
  const auto score = [&](EvalRow& r, std::chrono::steady_clock::time_point t0) {
    const Metrics met = lm ? evaluate_lm(*m, text, seq, job.batches, job.batch) : evaluate_classifier(*m, images, labels);
    r.loss = met.loss;
    r.accuracy = met.accuracy;
    r.word_accuracy = met.word_accuracy;
    r.words = met.words;
    r.units = met.units;
    if (lm) {
      r.perplexity = std::exp(met.loss);
      r.bits_per_byte = met.loss / std::log(2.0);
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rows.push_back(r);
    if (row_done) row_done(r);
  };
  for (const auto& f : formats) {
    const auto t0 = std::chrono::steady_clock::now();
    EvalRow r;
    r.format = f ? f->name : "fp32";
    r.bits_per_weight = f ? f->bits_per_weight() : 32.0;
    if (from == "master") {
      m->set_format(f);  // fake-quant forward of the fp32 master
      r.source = f ? "master->" + f->name + " (quantized)" : "master";
    } else {
      load_weights(*m, ck, f);  // Slice-and-Scale from the anchor's bits, dequantized once
      m->set_format(std::nullopt);
      r.source = f->name == ck.anchor_format()->name ? "anchor" : "anchor " + ck.anchor_format()->name + "->" + f->name + " (sliced)";
    }
    score(r, t0);
  }
  for (std::size_t i = 0; i < job.plans.size(); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    EvalRow r;
    r.format = job.plans[i].name;
    r.bits_per_weight = job.plans[i].bits_per_weight;
    load_weights(*m, ck, std::nullopt, &plan_formats[i]);
    m->set_format(std::nullopt);
    r.source = from == "anchor" ? "anchor " + ck.anchor_format()->name + "->plan (sliced per linear)" : "master->plan (quantized per linear)";
    score(r, t0);
  }
  m->set_format(std::nullopt);
  return rows;
}

}  // namespace mfqat::train
