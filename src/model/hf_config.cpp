// config.json of a Hugging Face Llama / Mistral / Qwen2 / Qwen3 causal LM -> LmConfig.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "json_object.h"
#include "mfqat/model/hf.h"

namespace mfqat::model {

namespace {

using nlohmann::json;

struct HfReader {
  const json& j;
  const std::string& name;
  [[noreturn]] void fail(const std::string& why) const { throw std::invalid_argument(name + ": " + why); }
  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }
  std::int64_t get_int(const char* k, std::int64_t lo, std::int64_t hi, std::optional<std::int64_t> fallback = std::nullopt) const {
    if (!has(k)) {
      if (!fallback) fail(std::string("'") + k + "' is missing");
      return *fallback;
    }
    if (!j[k].is_number_integer()) fail(std::string("'") + k + "' must be an integer");
    const auto v = j[k].get<std::int64_t>();
    if (v < lo || v > hi) fail(std::string("'") + k + "' = " + std::to_string(v) + " is out of range " + std::to_string(lo) + ".." + std::to_string(hi));
    return v;
  }
  double get_double(const char* k, double fallback) const {
    if (!has(k)) return fallback;
    if (!j[k].is_number()) fail(std::string("'") + k + "' must be a number");
    return j[k].get<double>();
  }
  bool get_bool(const char* k, bool fallback) const {
    if (!has(k)) return fallback;
    if (!j[k].is_boolean()) fail(std::string("'") + k + "' must be true or false");
    return j[k].get<bool>();
  }
  std::string get_string(const char* k, const std::string& fallback) const {
    if (!has(k)) return fallback;
    if (!j[k].is_string()) fail(std::string("'") + k + "' must be a string");
    return j[k].get<std::string>();
  }
};

}  // namespace

LmConfig hf_config(const std::string& text, const std::string& name, std::int64_t ctx) {
  const json j = detail::parse_json_object(text, name);
  const HfReader r{j, name};
  if (!r.has("architectures") || !j["architectures"].is_array() || j["architectures"].size() != 1 || !j["architectures"][0].is_string()) {
    r.fail("'architectures' must list one architecture");
  }
  const std::string a = j["architectures"][0].get<std::string>();
  LmConfig c;
  if (a == "LlamaForCausalLM") {
    c.arch = "llama";
  } else if (a == "MistralForCausalLM") {
    c.arch = "mistral";
  } else if (a == "Qwen2ForCausalLM") {
    c.arch = "qwen2";
  } else if (a == "Qwen3ForCausalLM") {
    c.arch = "qwen3";
  } else {
    r.fail("architecture '" + a + "' is not supported (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)");
  }
  c.vocab = r.get_int("vocab_size", 2, 1 << 22);
  c.dim = r.get_int("hidden_size", 8, 1 << 16);
  c.ffn_dim = r.get_int("intermediate_size", 1, 1 << 18);
  c.n_layers = r.get_int("num_hidden_layers", 1, 512);
  c.n_heads = r.get_int("num_attention_heads", 1, 1024);
  c.n_kv_heads = r.get_int("num_key_value_heads", 1, 1024, c.n_heads);
  if (r.has("head_dim")) c.head_size = r.get_int("head_dim", 2, 1 << 12);
  if (c.head_size == 0 && c.dim % c.n_heads != 0) r.fail("num_attention_heads = " + std::to_string(c.n_heads) + " does not divide hidden_size");
  if (c.head_dim() % 2 != 0) r.fail("head dimension " + std::to_string(c.head_dim()) + " is odd (rotary needs pairs)");
  if (c.n_heads % c.n_kv_heads != 0) r.fail("num_key_value_heads = " + std::to_string(c.n_kv_heads) + " does not divide num_attention_heads");
  c.norm_eps = r.get_double("rms_norm_eps", 1e-6);
  c.rope_theta = r.get_double("rope_theta", 10000.0);
  if (!(c.norm_eps > 0) || !(c.rope_theta > 1)) r.fail("want rms_norm_eps > 0 and rope_theta > 1");
  c.tie_embeddings = r.get_bool("tie_word_embeddings", false);
  const std::int64_t max_pos = r.get_int("max_position_embeddings", 1, std::int64_t{1} << 24, 2048);
  if (r.get_string("hidden_act", "silu") != "silu") r.fail("hidden_act '" + r.get_string("hidden_act", "") + "' is not supported (silu)");
  // Options that would change the computation and that mfqat does not implement: refused, named.
  if (r.get_bool("attention_bias", false)) r.fail("attention_bias = true is not supported (biases on q/k/v/o)");
  if (r.get_bool("mlp_bias", false)) r.fail("mlp_bias = true is not supported");
  for (const char* k : {"num_experts", "num_local_experts", "n_routed_experts"}) {
    if (r.has(k) && j[k].is_number() && j[k].get<double>() > 0) r.fail(std::string("'") + k + "': mixture-of-experts models are not supported");
  }
  if (c.arch == "qwen2") c.qkv_bias = true;  // Qwen2Attention: q/k/v projections with bias, o without
  if (c.arch == "qwen3") c.qk_norm = true;   // Qwen3Attention: RMSNorm over each head of q and k
  c.max_seq = ctx > 0 ? ctx : std::min(max_pos, kDefaultContext);
  if (c.arch == "qwen2" || c.arch == "qwen3") {
    if (r.get_bool("use_sliding_window", false)) r.fail("use_sliding_window = true is not supported");
  } else if (r.has("sliding_window")) {
    // Mistral: attention over the last `sliding_window` positions only. Within that many tokens
    // it is full causal attention, so the context is capped there rather than refused.
    const std::int64_t w = r.get_int("sliding_window", 1, std::int64_t{1} << 24);
    if (ctx > w) r.fail("sliding_window = " + std::to_string(w) + " is smaller than the context asked for (" + std::to_string(ctx) + "): not supported");
    c.max_seq = std::min(c.max_seq, w);
  }
  if (r.has("rope_scaling")) {
    const json& rs = j["rope_scaling"];
    if (!rs.is_object()) r.fail("'rope_scaling' must be an object or null");
    const HfReader s{rs, name};
    const std::string type = s.get_string("rope_type", s.get_string("type", "default"));
    if (type == "llama3") {
      c.rope_scaling.factor = s.get_double("factor", 0);
      c.rope_scaling.low_freq_factor = s.get_double("low_freq_factor", 1);
      c.rope_scaling.high_freq_factor = s.get_double("high_freq_factor", 4);
      c.rope_scaling.original_max_position = s.get_int("original_max_position_embeddings", 1, std::int64_t{1} << 24, 8192);
      if (!(c.rope_scaling.factor >= 1) || !(c.rope_scaling.high_freq_factor > c.rope_scaling.low_freq_factor) || !(c.rope_scaling.low_freq_factor > 0)) {
        r.fail("rope_scaling (llama3): want factor >= 1 and high_freq_factor > low_freq_factor > 0");
      }
    } else if (type != "default") {
      r.fail("rope_scaling type '" + type + "' is not supported (llama3)");
    }
  }
  return c;
}

}  // namespace mfqat::model
