// Model configurations shared by the trainer (libtorch) and the libtorch-free tools (export,
// runtime): what the model is, every parameter's name and shape, and which ones are quantized.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mfqat::model {

// Llama 3's rotary frequency scaling (Hugging Face rope_scaling {"rope_type": "llama3", ...}):
// long wavelengths divided by `factor`, short ones kept, a smooth blend between.
struct RopeScaling {
  double factor = 0;  // 0: no scaling
  double low_freq_factor = 1;
  double high_freq_factor = 4;
  std::int64_t original_max_position = 8192;
};

// Decoder-only transformer LM, Llama style (see docs/training.md): mfqat's own byte-level LM, or
// an imported Hugging Face Llama / Mistral / Qwen2 / Qwen3 model (docs/models.md), which add
// grouped-query attention, an explicit head size, q/k/v biases (Qwen2), per-head q/k RMSNorm
// (Qwen3), tied embeddings and Llama 3 rope scaling.
struct LmConfig {
  std::string arch = "mfqat";  // mfqat (own byte LM), llama, mistral, qwen2, qwen3
  std::int64_t vocab = 256;  // bytes
  std::int64_t dim = 256;
  std::int64_t n_layers = 4;
  std::int64_t n_heads = 4;
  std::int64_t n_kv_heads = 0;  // 0: n_heads (grouped-query attention when fewer)
  std::int64_t head_size = 0;   // 0: dim / n_heads
  std::int64_t ffn_dim = 0;  // 0: the Llama rule, 2/3 * 4 * dim rounded up to a multiple of 32
  std::int64_t max_seq = 256;   // the context the runtime's tables and KV cache are sized for
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  double norm_eps = 1e-5;
  bool qkv_bias = false;
  bool qk_norm = false;
  bool tie_embeddings = false;  // the head is the token embedding (no head.weight)
  bool quantize_head = false;  // also quantize the output head

  std::int64_t head_dim() const { return head_size > 0 ? head_size : dim / n_heads; }
  std::int64_t kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
  std::int64_t q_dim() const { return n_heads * head_dim(); }
  std::int64_t kv_dim() const { return kv_heads() * head_dim(); }
  std::int64_t hidden() const { return ffn_dim > 0 ? ffn_dim : ((8 * dim / 3) + 31) / 32 * 32; }
};

// The rotary inverse frequencies theta^(-2i/head_dim), i < head_dim/2, with the config's scaling:
// what the trainer and the runtime both rotate by (pairs (x[i], x[i + head_dim/2]), Hugging
// Face's rotate-half convention).
std::vector<double> rope_inv_freq(const LmConfig& c);

// MLP classifier (Fashion-MNIST by default): inputs -> hidden... (ReLU) -> classes.
struct MlpConfig {
  std::int64_t inputs = 784;
  std::vector<std::int64_t> hidden = {256, 256};
  std::int64_t classes = 10;
  bool quantize_head = false;
};

enum class Kind : std::uint8_t { Lm, Mlp };

struct Param {
  std::string name;
  std::vector<std::int64_t> shape;
  bool quantized = false;  // an MX weight of a quantized linear ([out, in], blocks along in)
};

struct ModelConfig {
  Kind kind = Kind::Lm;
  LmConfig lm;
  MlpConfig mlp;

  static ModelConfig default_lm() { return {}; }
  static ModelConfig default_mlp() {
    ModelConfig c;
    c.kind = Kind::Mlp;
    return c;
  }
  const char* kind_name() const { return kind == Kind::Lm ? "lm" : "mlp"; }
  // {"model": "lm", ...} or {"model": "mlp", ...}; "model" defaults to "lm".
  std::string to_json() const;
  // Parses and validates; throws std::invalid_argument("NAME: field: reason") on a bad config.
  static ModelConfig from_json(const std::string& text, const std::string& name);
  // Every parameter in the order the trainer registers them (the checkpoint's tensors).
  std::vector<Param> params() const;
  std::int64_t param_count() const;
};

}  // namespace mfqat::model
