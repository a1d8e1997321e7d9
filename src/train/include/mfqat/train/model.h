// Models for MF-QAT: a byte-level decoder-only transformer LM in the Llama style (RMSNorm,
// rotary position embeddings, SwiGLU MLP, causal multi-head attention). Every linear layer of
// the blocks is a QuantLinear; embeddings, norms and the output head stay fp32 unless the
// config says otherwise.
#pragma once

#include <string>
#include <vector>

#include "mfqat/train/quant_linear.h"

namespace mfqat::train {

struct LmConfig {
  std::int64_t vocab = 256;  // bytes
  std::int64_t dim = 256;
  std::int64_t n_layers = 4;
  std::int64_t n_heads = 4;
  std::int64_t ffn_dim = 0;  // 0: the Llama rule, 2/3 * 4 * dim rounded up to a multiple of 32
  std::int64_t max_seq = 256;
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  bool quantize_head = false;  // also fake-quantize the output head

  std::int64_t head_dim() const { return dim / n_heads; }
  std::int64_t hidden() const { return ffn_dim > 0 ? ffn_dim : ((8 * dim / 3) + 31) / 32 * 32; }
  std::string to_json() const;
  // Parses and validates; throws std::invalid_argument("NAME: field: reason") on a bad config.
  static LmConfig from_json(const std::string& text, const std::string& name);
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
  QuantLinear wq{nullptr}, wk{nullptr}, wv{nullptr}, wo{nullptr}, w1{nullptr}, w2{nullptr}, w3{nullptr};

 private:
  std::int64_t n_heads_, head_dim_;
};
TORCH_MODULE(Block);

class TransformerLmImpl : public torch::nn::Module {
 public:
  explicit TransformerLmImpl(const LmConfig& c);
  // tokens: [B, T] int64 in [0, vocab), T <= max_seq. Returns logits [B, T, vocab].
  torch::Tensor forward(const torch::Tensor& tokens);
  // Sets the format of every quantized linear (nullopt = fp32) and their options.
  void set_format(const std::optional<mx::Format>& f, const FakeQuantOptions& opt = {});
  // The quantized linears by parameter name of their weight ("blocks.0.wq.weight" ...).
  std::vector<std::pair<std::string, QuantLinear>> quant_linears();
  const LmConfig& config() const { return cfg_; }

  torch::nn::Embedding tok_emb{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  RmsNorm norm{nullptr};
  QuantLinear head{nullptr};

 private:
  LmConfig cfg_;
  torch::Tensor cos_, sin_;  // [max_seq, head_dim/2], buffers
};
TORCH_MODULE(TransformerLm);

// Rotary embedding on x [B, T, H, D] (half-split pairs: (x[i], x[i + D/2]) rotate by
// position * theta^(-2i/D)). The runtime applies the same convention.
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

}  // namespace mfqat::train
