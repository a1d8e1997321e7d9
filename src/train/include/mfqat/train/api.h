// Torch-free entry points for the CLI (so that src/cli never includes <torch/torch.h>).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace mfqat::train {

struct TrainJob {
  std::string config;     // model config JSON file; empty = the built-in default of `model` (or the --init checkpoint's)
  std::string model = "lm";  // lm | mlp: which built-in default config
  std::string init;       // fp32 checkpoint (or Hugging Face directory) to start from
  std::string text;       // LM: train on this text file (its last tenth validates) instead of the prepared novels
  std::string output;     // fp32 checkpoint to write (.safetensors)
  std::string data_dir = "data";
  std::string mode = "fp32", format, formats, strategy = "joint", weights, ste = "plain";
  std::int64_t steps = 200, batch = 0, seq = 128, train_sequences = -1, warmup = 20, eval_every = 0, eval_batches = 8;
  double lr = 3e-3, weight_decay = 0.1, clip = 1.0;
  std::uint64_t seed = 0;
  int threads = 0;
  std::string metrics;
  bool progress = true;
  bool resume = false;            // continue from OUTPUT.state
  std::int64_t save_every = 50;   // training-state checkpoint period (steps)
  std::int64_t stop_after = 0;    // testing: stop after N steps as if interrupted
  // Data parallel over c10d Gloo (world_size > 1): this process is rank `rank`; rank 0 hosts
  // the TCPStore rendezvous at `master` (ADDR:PORT) and alone writes the checkpoint, the state
  // and the metrics. Timeout in seconds for the rendezvous and every collective.
  int world_size = 1, rank = 0;
  std::string master = "127.0.0.1:29500";
  double dist_timeout = 300;
};

struct TrainSummary {
  double first_loss = 0, last_loss = 0, valid_loss = 0, valid_accuracy = -1, tokens_per_s = 0, seconds = 0;
  double comm_seconds = 0;  // data parallel: time in the gradient all-reduce
  std::int64_t steps = 0;
};

// Validates the job (one-line std::exception messages), trains, writes the checkpoint atomically.
TrainSummary run_train(const TrainJob& job, const std::function<void(const std::string&)>& log);

struct EvalJob {
  std::string model;          // fp32 master or MX anchor (.safetensors)
  std::string formats = "all";  // list of names, "int", "fp", "all"; "fp32" = unquantized (master only)
  std::string from;           // master | anchor; empty: what the file is
  std::string text;           // LM: any text file; empty: the prepared split
  std::string data_dir = "data";
  std::string split = "test";  // test | valid (| train for the classifier)
  std::int64_t seq = 0;        // LM window; 0: the model's max_seq
  std::int64_t batches = 16, batch = 8;  // LM windows: batches x batch spread over the text; batches 0: all of it
  int threads = 0;
  // Bits-budget plans evaluated after the formats (formats may then be empty): a name and the
  // format of every quantized linear by parameter name (from a master: quantized; from an
  // anchor: Slice-and-Scale).
  struct Plan {
    std::string name;
    double bits_per_weight = 0;
    std::map<std::string, std::string> formats;
  };
  std::vector<Plan> plans;
};

struct EvalRow {
  std::string format;      // "fp32" or a format name
  double bits_per_weight = 32;  // element bits + 8 / block size
  std::string source;      // "master", "master->F (quantized)", "anchor", "anchor A->F (sliced)"
  double loss = 0, perplexity = 0, bits_per_byte = 0;  // LM (loss in nats per byte)
  double accuracy = -1;    // classifier
  double word_accuracy = -1;  // byte-level LM: greedy decoding from the true prefix writes the next word exactly
  std::int64_t words = 0;     // words that scored
  std::int64_t units = 0;  // bytes or examples scored
  double seconds = 0;
};

// The first-order (Fisher) sensitivity's statistics (issue 22, docs/budget.md): for every
// parameter named in `linears` (pass every quantized linear), the mean over calibration windows
// of the squared gradient of the window's mean next-token loss (bytes, or a tokenizer's ids), those parameters loaded at
// `reference` (Slice-and-Scale from an anchor, quantized from a master). Windows of seq + 1 bytes
// spread over `tokens` as runtime::perplexity spreads them; one backward each.
struct SquaredGradients {
  std::map<std::string, std::vector<float>> mean_sq;  // per parameter, row-major like its weight
  double loss = 0;                                     // mean window loss at the reference
  std::int64_t windows = 0, seq = 0;
};
SquaredGradients squared_gradients(const std::string& model, const std::string& reference, const std::vector<std::string>& linears,
                                   const std::vector<std::int32_t>& tokens, std::int64_t seq, std::int64_t windows, int threads);

// Evaluates the model at each format; throws a one-line std::exception on bad input.
std::vector<EvalRow> run_eval(const EvalJob& job, const std::function<void(const EvalRow&)>& row_done);

}  // namespace mfqat::train
