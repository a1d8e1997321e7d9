// Model configurations shared by the trainer (libtorch) and the libtorch-free tools (export,
// runtime): what the model is, every parameter's name and shape, and which ones are quantized.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mfqat::model {

// Byte-level decoder-only transformer LM, Llama style (see docs/training.md).
struct LmConfig {
  std::int64_t vocab = 256;  // bytes
  std::int64_t dim = 256;
  std::int64_t n_layers = 4;
  std::int64_t n_heads = 4;
  std::int64_t ffn_dim = 0;  // 0: the Llama rule, 2/3 * 4 * dim rounded up to a multiple of 32
  std::int64_t max_seq = 256;
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  bool quantize_head = false;  // also quantize the output head

  std::int64_t head_dim() const { return dim / n_heads; }
  std::int64_t hidden() const { return ffn_dim > 0 ? ffn_dim : ((8 * dim / 3) + 31) / 32 * 32; }
};

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
