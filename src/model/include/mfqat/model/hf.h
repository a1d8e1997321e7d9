// Hugging Face model directories as mfqat models: config.json of a LlamaForCausalLM,
// MistralForCausalLM, Qwen2ForCausalLM or Qwen3ForCausalLM, weights from model.safetensors or
// its shards (model.safetensors.index.json) in BF16, F16 or F32, read tensor by tensor through
// the validated mmap reader and renamed to mfqat's parameter names. What is supported and what
// is refused: docs/models.md.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mfqat/ckpt/safetensors.h"
#include "mfqat/model/config.h"

namespace mfqat::model {

// The context a model is opened with when none is asked for (its KV cache and rotary tables):
// the model's own max_position_embeddings if smaller.
inline constexpr std::int64_t kDefaultContext = 4096;

// config.json text -> the LM config. `ctx` > 0 sizes max_seq (else min(max_position_embeddings,
// kDefaultContext)). Refuses, in one line naming `name` and the field, any other architecture
// and every option the engine and trainer do not implement (another rope scaling, MoE, biases
// other than Qwen2's q/k/v, an activation other than SiLU, a sliding window that is in effect).
LmConfig hf_config(const std::string& text, const std::string& name, std::int64_t ctx = 0);

// Whether `path` is a directory holding a Hugging Face config.json.
bool is_hf_dir(const std::string& path);

// The weights of a Hugging Face directory, by mfqat parameter name.
class HfWeights {
 public:
  // Opens config.json and every shard; checks that each parameter the config implies is present
  // exactly once with its shape and a float dtype, and that no other tensor is there (except
  // tensors that carry no weights, e.g. rotary inv_freq buffers, and a tied model's lm_head).
  // Errors: std::runtime_error("FILE: [tensor 'NAME': ]reason"), one line.
  static std::shared_ptr<const HfWeights> open(const std::string& dir, std::int64_t ctx = 0);

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }
  // A parameter's values in fp32 (BF16 and F16 widened exactly), NaN/Inf refused naming it.
  std::vector<float> values(const Param& p) const;
  // The source tensor (file and Hugging Face name) of a parameter, for messages.
  std::string source(const std::string& param) const;
  std::uint64_t bytes() const { return bytes_; }  // of all shards
  // tokenizer.json of the directory, if there is one (its text), and tokenizer_config.json.
  const std::optional<std::string>& tokenizer_json() const { return tokenizer_json_; }
  const std::optional<std::string>& tokenizer_config_json() const { return tokenizer_config_; }

 private:
  struct Where {
    std::size_t shard;
    const ckpt::TensorInfo* tensor;
  };
  std::string dir_;
  ModelConfig config_;
  std::vector<ckpt::SafetensorsFile> shards_;
  std::map<std::string, Where> where_;  // mfqat name -> tensor
  std::uint64_t bytes_ = 0;
  std::optional<std::string> tokenizer_json_, tokenizer_config_;
};

// The Hugging Face name of an mfqat LM parameter ("blocks.3.wq.weight" ->
// "model.layers.3.self_attn.q_proj.weight").
std::string hf_name(const std::string& mfqat_name);

}  // namespace mfqat::model
