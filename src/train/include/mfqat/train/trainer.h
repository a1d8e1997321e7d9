// Training loop for the LM and the classifier: fp32 pretraining, single-format QAT (sf) and
// multi-format QAT (mf: joint, cycle, random). AdamW with linear warm-up and cosine decay,
// gradient clipping, seeded sampling, JSON-lines metrics, a progress line, resumable state.
// Master weights stay fp32; the checkpoint is a safetensors file of F32 tensors with the model
// config in its metadata.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mfqat/model/checkpoint.h"
#include "mfqat/train/api.h"
#include "mfqat/train/dist.h"
#include "mfqat/train/model.h"

namespace mfqat::train {

struct TrainOptions {
  std::string mode = "fp32";        // fp32 | sf | mf
  std::vector<mx::Format> formats;  // sf: one; mf: several
  std::string strategy = "joint";   // mf: joint | cycle | random
  std::vector<double> weights;      // mf random: sampling weights (default uniform)
  Ste ste = Ste::Plain;
  std::int64_t steps = 200, batch = 16;
  std::int64_t train_sequences = 0;    // > 0: a fixed set of that many training items (QAT fine-tune set)
  double lr = 3e-3, min_lr_ratio = 0.1, weight_decay = 0.1, clip = 1.0;
  std::int64_t warmup = 20;
  std::uint64_t seed = 0;
  std::int64_t eval_every = 0;  // 0: evaluate at the end only
  std::string metrics_path;  // JSON lines; empty = none
  bool progress = true;
  // Training state (weights, AdamW moments, step, RNG, fine-tune set) for --resume, written
  // atomically every save_every steps and at the end; empty = none.
  std::string state_path;
  std::int64_t save_every = 50;
  bool resume = false;        // continue from state_path
  std::int64_t stop_after = 0;  // > 0: stop (as if killed) after this many steps, state saved; for tests
  // Data parallel (dist.h): null = one process. Every rank runs this loop; rank r trains on
  // the items b % size == r of each global batch of `batch`; only rank 0 validates, writes the
  // training state and metrics, and shows progress.
  Comm* comm = nullptr;
};

struct Metrics {
  double loss = 0;       // mean cross-entropy (nats per byte / per example)
  double accuracy = -1;  // classifier only
  std::int64_t units = 0;  // bytes or examples scored
  double word_accuracy = -1;  // byte-level LM: next-word accuracy (greedy writes the whole word), over `words` words
  std::int64_t words = 0;
};

// What is trained on: items to sample, the loss of a batch of them, a held-out metric.
class Task {
 public:
  virtual ~Task() = default;
  virtual std::int64_t items() const = 0;                  // sampling range [0, items)
  virtual std::int64_t units_per_item() const = 0;         // bytes (LM) or 1 (classifier), for throughput
  virtual torch::Tensor loss(QuantModelImpl& m, const std::vector<std::int64_t>& items) = 0;
  virtual Metrics validate(QuantModelImpl& m) = 0;
  virtual bool has_validation() const = 0;
};

// Next-byte prediction on windows of seq + 1 bytes of a text; validation on `valid` (may be empty).
// Token ids (a tokenizer's; models with a vocabulary of their own):
std::unique_ptr<Task> lm_task(std::vector<std::int32_t> train, std::vector<std::int32_t> valid, std::int64_t seq, std::int64_t eval_batches);
std::unique_ptr<Task> lm_task(std::vector<std::uint8_t> train, std::vector<std::uint8_t> valid, std::int64_t seq,
                              std::int64_t eval_batches);
// Fashion-MNIST: the first 55000 training images train, the last 5000 validate.
std::unique_ptr<Task> fmnist_task(const std::string& data_dir);

using TrainResult = TrainSummary;
using Log = std::function<void(const std::string&)>;

TrainResult train(QuantModelImpl& model, Task& task, const TrainOptions& opt, const Log& log);

// One optimizer step on `items`: forward/backward once per format in `run` (nullopt = fp32;
// losses scaled by 1/|run| so the gradients are averaged), gradient-norm clip, optimizer step.
// Returns the mean loss. The model is left at fp32. With `comm`, `items` are this rank's share
// of the global batch: its losses are also scaled by `share` (its fraction of the global batch)
// and gradients and loss are summed over the ranks before the clip; `step` names the step in errors.
double train_step(QuantModelImpl& model, Task& task, const std::vector<std::int64_t>& items,
                  const std::vector<std::optional<mx::Format>>& run, torch::optim::Optimizer& opt, double clip, Ste ste = Ste::Plain,
                  Comm* comm = nullptr, double share = 1.0, std::int64_t step = 0);

// LM: mean next-byte cross-entropy (nats) over `batches` x `batch` windows of seq + 1 bytes
// spread evenly over `text` (batches = 0: every non-overlapping window, the whole text).
// Next-word accuracy of byte-level text (evaluate_lm): a word (a run of ASCII letters after a
// non-letter) counts as predicted when the argmax at each of its bytes and at the byte that ends
// it is the true byte, i.e. when greedy decoding from the true prefix writes exactly that word.
// Adds the words of the window text[start, start + hit.size()] to (words, correct); hit[t]: the
// prediction of byte start + 1 + t was right. Words whose end lies past the window are skipped.
void count_next_words(const std::vector<std::uint8_t>& text, std::int64_t start, const std::vector<bool>& hit, std::int64_t& words,
                      std::int64_t& correct);
Metrics evaluate_lm(QuantModelImpl& model, const std::vector<std::int32_t>& ids, std::int64_t seq, std::int64_t batches, std::int64_t batch = 8);
Metrics evaluate_lm(QuantModelImpl& model, const std::vector<std::uint8_t>& text, std::int64_t seq, std::int64_t batches,
                    std::int64_t batch = 8);
// Classifier: loss and accuracy over images [N, inputs] (float) and labels [N] (int64).
Metrics evaluate_classifier(QuantModelImpl& model, const torch::Tensor& images, const torch::Tensor& labels);
// Fashion-MNIST split "train" (55000), "valid" (5000) or "test" (10000) as normalised floats.
std::pair<torch::Tensor, torch::Tensor> fmnist_split(const std::string& data_dir, const std::string& split);

// fp32 checkpoints: every parameter as F32, config in metadata "mfqat.model_config".
// A model with a tokenizer (imported from Hugging Face) keeps it in the file (model::kTokenizerTensor).
void save_checkpoint(QuantModelImpl& model, const std::string& path, const std::map<std::string, std::string>& extra = {},
                     const std::optional<std::string>& tokenizer_json = std::nullopt);
// Reads the config from a checkpoint or a Hugging Face directory (throws naming the file when it has none).
ModelConfig checkpoint_config(const std::string& path);
// Copies a checkpoint's parameters into the model; names and shapes must match the model's
// ("PATH: tensor 'N': ..."). From an anchor, quantized weights are derived in `target` by
// Slice-and-Scale (nullopt: the anchor format) and dequantized. `per` (a bits-budget plan):
// these parameters instead in their own format, from an anchor by Slice-and-Scale, from a
// master quantized (RNE), dequantized.
void load_weights(QuantModelImpl& model, const model::Checkpoint& ck, const std::optional<mx::Format>& target = std::nullopt,
                  const std::map<std::string, mx::Format>* per = nullptr);
void load_checkpoint(QuantModelImpl& model, const std::string& path);

}  // namespace mfqat::train
