#include <fmt/core.h>

#include <algorithm>
#include <stdexcept>

#include <nlohmann/json.hpp>
#include "mfqat/mx/parallel.h"

#include "commands.h"
#include "launch.h"
#include "mfqat/train/api.h"

namespace mfqat::cli {

namespace {

// `--nproc N`: this command line again N times, as ranks 0..N-1 of a loopback job, each with
// its share of the threads (--threads, or all cores, divided by N).
void launch_local(int nproc, const std::string& master) {
  const auto& args = process_args();
  std::size_t i = 1;
  while (i < args.size() && args[i] != "train") i += args[i] == "--threads" ? 2 : 1;
  if (i >= args.size()) throw std::runtime_error("--nproc: cannot find the train command in the command line");
  std::vector<std::string> rest;
  for (std::size_t k = i + 1; k < args.size(); ++k) {
    if (args[k] == "--nproc") {
      ++k;
    } else if (args[k].rfind("--nproc=", 0) != 0) {
      rest.push_back(args[k]);
    }
  }
  const std::string addr = master.empty() ? "127.0.0.1:" + std::to_string(free_loopback_port()) : master;
  const int threads = std::max(1, num_threads() / nproc);
  std::vector<std::vector<std::string>> per_rank;
  for (int r = 0; r < nproc; ++r) {
    std::vector<std::string> a = {"--threads", std::to_string(threads), "train"};
    a.insert(a.end(), rest.begin(), rest.end());
    for (const std::string& x : {std::string("--world-size"), std::to_string(nproc), std::string("--rank"), std::to_string(r),
                                 std::string("--master"), addr}) {
      a.push_back(x);
    }
    per_rank.push_back(std::move(a));
  }
  run_ranks(nproc, per_rank);
}

}  // namespace

Command add_train(CLI::App& app) {
  auto* sub = app.add_subcommand("train", "Train the byte-level LM: fp32 pretraining, single-format or multi-format QAT");
  auto j = std::make_shared<train::TrainJob>();
  auto json = std::make_shared<bool>(false);
  sub->add_option("--config", j->config, "model config JSON (default: the --init checkpoint's, else the built-in --model)");
  sub->add_option("--model", j->model, "built-in model: lm (byte-level LM on Austen) or mlp (Fashion-MNIST classifier)")
      ->check(CLI::IsMember({"lm", "mlp"}));
  sub->add_option("--init", j->init, "fp32 checkpoint or Hugging Face model directory to start from (QAT starts from a pretrained model)");
  sub->add_option("--text", j->text, "LM: train on this text file (its last tenth validates; tokenized with the --init model's tokenizer where it has one)");
  sub->add_option("-o,--output", j->output, "fp32 master checkpoint to write (.safetensors)")->required();
  sub->add_option("--data-dir", j->data_dir, "prepared data (see `mfqat data prepare`; default data)");
  sub->add_option("--mode", j->mode, "fp32 | sf | mf")->check(CLI::IsMember({"fp32", "sf", "mf"}));
  sub->add_option("--format", j->format, "sf: the format");
  sub->add_option("--formats", j->formats, "mf: comma-separated formats (or int / fp / all)");
  sub->add_option("--strategy", j->strategy, "mf: joint (average gradients over all formats), cycle, random")
      ->check(CLI::IsMember({"joint", "cycle", "random"}));
  sub->add_option("--weights", j->weights, "mf random: comma-separated sampling weights");
  sub->add_option("--ste", j->ste, "straight-through estimator: plain or clipped")->check(CLI::IsMember({"plain", "clipped"}));
  sub->add_option("--steps", j->steps, "optimizer steps")->check(CLI::PositiveNumber);
  sub->add_option("--batch", j->batch, "items per step (default 16 sequences for the LM, 128 images for the classifier)")->check(CLI::PositiveNumber);
  sub->add_option("--seq", j->seq, "bytes per sequence")->check(CLI::PositiveNumber);
  sub->add_option("--train-sequences", j->train_sequences, "size of the fixed fine-tune set (QAT default 128; 0 = sample freely)");
  sub->add_option("--lr", j->lr, "peak learning rate (AdamW, warm-up then cosine)");
  sub->add_option("--warmup", j->warmup, "warm-up steps");
  sub->add_option("--weight-decay", j->weight_decay, "AdamW weight decay");
  sub->add_option("--clip", j->clip, "gradient-norm clip");
  sub->add_option("--seed", j->seed, "seed (same seed and threads: same result)");
  sub->add_option("--eval-every", j->eval_every, "validation loss every N steps (0: at the end)");
  sub->add_option("--eval-batches", j->eval_batches, "validation batches");
  sub->add_option("--metrics", j->metrics, "write JSON-lines metrics here");
  sub->add_flag("--json", *json, "print the summary as JSON (no progress bar)");
  sub->add_flag("--resume", j->resume, "continue from OUTPUT.state (weights, optimizer, step, RNG)");
  sub->add_option("--save-every", j->save_every, "write OUTPUT.state every N steps (atomic; 0: only at the end)");
  sub->add_option("--stop-after", j->stop_after, "testing: stop after N steps as if interrupted (state saved)");
  auto nproc = std::make_shared<int>(1);
  sub->add_option("--nproc", *nproc, "data parallel on this machine: start N ranks on loopback (--threads is split among them)")
      ->check(CLI::Range(1, 256));
  sub->add_option("--world-size", j->world_size, "data parallel: number of ranks (processes, on any machines)")->check(CLI::Range(1, 256));
  sub->add_option("--rank", j->rank, "data parallel: this process's rank, 0..world-size-1 (rank 0 writes the outputs)")
      ->check(CLI::NonNegativeNumber);
  auto* master = sub->add_option("--master", j->master, "data parallel: ADDR:PORT of rank 0's rendezvous (TCPStore; default 127.0.0.1:29500)");
  sub->add_option("--dist-timeout", j->dist_timeout, "data parallel: seconds to wait for the rendezvous and for every all-reduce")
      ->check(CLI::PositiveNumber);
  return {sub, [j, json, nproc, master]() {
    if (*nproc > 1) {
      if (j->world_size != 1 || j->rank != 0) throw std::invalid_argument("--nproc starts its own ranks; drop --world-size and --rank");
      launch_local(*nproc, master->count() > 0 ? j->master : "");
      return 0;
    }
    j->threads = num_threads();  // --threads / MFQAT_NUM_THREADS / all cores
    if (*json) j->progress = false;
    const auto s = train::run_train(*j, [&](const std::string& m) {
      if (!*json) fmt::print("{}\n", m);
    });
    if (*json) {
      fmt::print("{}\n", nlohmann::json{{"steps", s.steps},
                                        {"first_loss", s.first_loss},
                                        {"last_loss", s.last_loss},
                                        {"valid_loss", s.valid_loss},
                                        {"valid_accuracy", s.valid_accuracy},
                                        {"tokens_per_s", s.tokens_per_s},
                                        {"seconds", s.seconds},
                                        {"comm_seconds", s.comm_seconds}}
                             .dump());
    }
    return 0;
  }};
}

}  // namespace mfqat::cli
