// Models for MF-QAT: a byte-level decoder-only transformer LM in the Llama style (RMSNorm,
// rotary position embeddings, SwiGLU MLP, causal multi-head attention). Every linear layer of
// the blocks is a QuantLinear; embeddings, norms and the output head stay fp32 unless the
// config says otherwise.
#pragma once

#include <string>
#include <vector>

#include "mfqat/model/config.h"
#include "mfqat/train/quant_linear.h"

namespace mfqat::train {

using model::LmConfig;
using model::MlpConfig;
using model::ModelConfig;

// What the trainer and evaluator need of a model: a forward, its quantized linears, its config.
class QuantModelImpl : public torch::nn::Module {
 public:
  // LM: tokens [B, T] int64 -> logits [B, T, vocab]. MLP: x [B, inputs] float -> logits [B, classes].
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  // The quantized linears by parameter name of their weight ("blocks.0.wq.weight" ...), in
  // the order of ModelConfig::params().
  virtual std::vector<std::pair<std::string, QuantLinear>> quant_linears() = 0;
  virtual ModelConfig model_config() const = 0;
  // Sets the format of every quantized linear (nullopt = fp32) and their options.
  void set_format(const std::optional<mx::Format>& f, const FakeQuantOptions& opt = {});
};

class RmsNormImpl : public torch::nn::Module {
 public:
  RmsNormImpl(std::int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RmsNorm);

class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(const LmConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);
  RmsNorm attn_norm{nullptr}, mlp_norm{nullptr};
  RmsNorm q_norm{nullptr}, k_norm{nullptr};  // qk_norm only
  QuantLinear wq{nullptr}, wk{nullptr}, wv{nullptr}, wo{nullptr}, w1{nullptr}, w2{nullptr}, w3{nullptr};

 private:
  std::int64_t n_heads_, n_kv_heads_, head_dim_;
};
TORCH_MODULE(Block);

class TransformerLmImpl : public QuantModelImpl {
 public:
  explicit TransformerLmImpl(const LmConfig& c);
  // tokens: [B, T] int64 in [0, vocab), T <= max_seq. Returns logits [B, T, vocab].
  torch::Tensor forward(const torch::Tensor& tokens) override;
  std::vector<std::pair<std::string, QuantLinear>> quant_linears() override;
  ModelConfig model_config() const override;
  const LmConfig& config() const { return cfg_; }

  torch::nn::Embedding tok_emb{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  RmsNorm norm{nullptr};
  QuantLinear head{nullptr};  // null with tie_embeddings (the head is tok_emb's weight)

 private:
  LmConfig cfg_;
  torch::Tensor cos_, sin_;  // [max_seq, head_dim/2], buffers
};
TORCH_MODULE(TransformerLm);

// MLP classifier: QuantLinear layers with bias and ReLU, then the head (fp32 unless configured).
class MlpClassifierImpl : public QuantModelImpl {
 public:
  explicit MlpClassifierImpl(const MlpConfig& c);
  torch::Tensor forward(const torch::Tensor& x) override;  // [B, inputs] -> [B, classes]
  std::vector<std::pair<std::string, QuantLinear>> quant_linears() override;
  ModelConfig model_config() const override;

  torch::nn::ModuleList layers{nullptr};
  QuantLinear head{nullptr};

 private:
  MlpConfig cfg_;
};
TORCH_MODULE(MlpClassifier);

// The model a config describes, with its parameters in the order of ModelConfig::params().
std::shared_ptr<QuantModelImpl> make_model(const ModelConfig& c);

// Rotary embedding on x [B, T, H, D] (half-split pairs: (x[i], x[i + D/2]) rotate by
// position * theta^(-2i/D)). The runtime applies the same convention.
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

}  // namespace mfqat::train
