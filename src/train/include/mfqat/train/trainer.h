// Training loop for the LM: fp32 pretraining, single-format QAT (sf) and multi-format QAT (mf:
// joint, cycle, random). AdamW with linear warm-up and cosine decay, gradient clipping, seeded
// sampling, JSON-lines metrics, a progress line. Master weights stay fp32; the checkpoint is a
// safetensors file of F32 tensors with the model config in its metadata.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "mfqat/train/api.h"
#include "mfqat/train/model.h"

namespace mfqat::train {

struct TrainOptions {
  std::string mode = "fp32";        // fp32 | sf | mf
  std::vector<mx::Format> formats;  // sf: one; mf: several
  std::string strategy = "joint";   // mf: joint | cycle | random
  std::vector<double> weights;      // mf random: sampling weights (default uniform)
  Ste ste = Ste::Plain;
  std::string train_text, valid_text;  // paths
  std::string init;                    // fp32 checkpoint to start from (QAT); empty = random init
  std::int64_t steps = 200, batch = 16, seq = 128;
  std::int64_t train_sequences = 0;    // > 0: a fixed set of that many windows (QAT fine-tune set)
  double lr = 3e-3, min_lr_ratio = 0.1, weight_decay = 0.1, clip = 1.0;
  std::int64_t warmup = 20;
  std::uint64_t seed = 0;
  std::int64_t eval_every = 0, eval_batches = 8;  // 0: evaluate at the end only
  std::string metrics_path;  // JSON lines; empty = none
  bool progress = true;
  // Training state (weights, AdamW moments, step, RNG, fine-tune set) for --resume, written
  // atomically every save_every steps and at the end; empty = none.
  std::string state_path;
  std::int64_t save_every = 50;
  bool resume = false;        // continue from state_path
  std::int64_t stop_after = 0;  // > 0: stop (as if killed) after this many steps, state saved; for tests
};

using TrainResult = TrainSummary;

using Log = std::function<void(const std::string&)>;

TrainResult train(TransformerLm& model, const TrainOptions& opt, const Log& log);

// Mean next-byte cross-entropy (nats) over `batches` deterministic windows of `text`.
double evaluate(TransformerLm& model, const std::vector<std::uint8_t>& text, std::int64_t seq, std::int64_t batches,
                std::int64_t batch = 8);

// fp32 checkpoints: every parameter as F32, config in metadata "mfqat.model_config".
void save_checkpoint(TransformerLm& model, const std::string& path, const std::map<std::string, std::string>& extra = {});
// Reads the config from a checkpoint (throws naming the file when it has none).
LmConfig checkpoint_config(const std::string& path);
// Loads weights; every parameter must be present with its shape ("PATH: tensor 'N': ...").
void load_checkpoint(TransformerLm& model, const std::string& path);

}  // namespace mfqat::train
