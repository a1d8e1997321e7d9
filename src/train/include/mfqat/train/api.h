// Torch-free entry points for the CLI (so that src/cli never includes <torch/torch.h>).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace mfqat::train {

struct TrainJob {
  std::string config;     // LM config JSON file; empty = the default config (or the --init checkpoint's)
  std::string init;       // fp32 checkpoint to start from
  std::string output;     // fp32 checkpoint to write (.safetensors)
  std::string data_dir = "data";
  std::string mode = "fp32", format, formats, strategy = "joint", weights, ste = "plain";
  std::int64_t steps = 200, batch = 16, seq = 128, train_sequences = -1, warmup = 20, eval_every = 0, eval_batches = 8;
  double lr = 3e-3, weight_decay = 0.1, clip = 1.0;
  std::uint64_t seed = 0;
  int threads = 0;
  std::string metrics;
  bool progress = true;
  bool resume = false;            // continue from OUTPUT.state
  std::int64_t save_every = 50;   // training-state checkpoint period (steps)
  std::int64_t stop_after = 0;    // testing: stop after N steps as if interrupted
};

struct TrainSummary {
  double first_loss = 0, last_loss = 0, valid_loss = 0, tokens_per_s = 0, seconds = 0;
  std::int64_t steps = 0;
};

// Validates the job (one-line std::exception messages), trains, writes the checkpoint atomically.
TrainSummary run_train(const TrainJob& job, const std::function<void(const std::string&)>& log);

}  // namespace mfqat::train
