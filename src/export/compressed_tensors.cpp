#include "mfqat/export/compressed_tensors.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "mfqat/ckpt/file.h"
#include "mfqat/ckpt/stream_writer.h"
#include "mfqat/export/ggml_blocks.h"
#include "mfqat/export/gguf_export.h"

namespace mfqat::exporter {

namespace fs = std::filesystem;

namespace {

nlohmann::json hf_config_json(const model::LmConfig& c) {
  static const std::map<std::string, std::pair<const char*, const char*>> kArch = {
      {"mfqat", {"LlamaForCausalLM", "llama"}},   {"llama", {"LlamaForCausalLM", "llama"}},
      {"mistral", {"MistralForCausalLM", "mistral"}}, {"qwen2", {"Qwen2ForCausalLM", "qwen2"}},
      {"qwen3", {"Qwen3ForCausalLM", "qwen3"}},
  };
  const auto it = kArch.find(c.arch);
  if (it == kArch.end()) throw std::invalid_argument("architecture '" + c.arch + "' has no Hugging Face name");
  nlohmann::json j = {{"architectures", {it->second.first}},
                      {"model_type", it->second.second},
                      {"vocab_size", c.vocab},
                      {"hidden_size", c.dim},
                      {"intermediate_size", c.hidden()},
                      {"num_hidden_layers", c.n_layers},
                      {"num_attention_heads", c.n_heads},
                      {"num_key_value_heads", c.kv_heads()},
                      {"head_dim", c.head_dim()},
                      {"max_position_embeddings", c.max_seq},
                      {"rms_norm_eps", c.norm_eps},
                      {"rope_theta", c.rope_theta},
                      {"hidden_act", "silu"},
                      {"tie_word_embeddings", c.tie_embeddings},
                      {"attention_bias", c.qkv_bias},
                      {"attention_dropout", 0.0}};
  if (c.arch == "llama" || c.arch == "mfqat") j["mlp_bias"] = false;
  if (c.arch == "mistral" || c.arch == "qwen2" || c.arch == "qwen3") j["sliding_window"] = nullptr;
  if (c.arch == "qwen2" || c.arch == "qwen3") j["use_sliding_window"] = false;
  if (c.rope_scaling.factor > 0)
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", c.rope_scaling.factor},
                         {"low_freq_factor", c.rope_scaling.low_freq_factor},
                         {"high_freq_factor", c.rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", c.rope_scaling.original_max_position}};
  return j;
}

// compressed-tensors' MXFP4A16 preset (quant_scheme.py) as its model compressor serializes it.
nlohmann::json quantization_config(bool head_quantized) {
  const nlohmann::json weights = {{"num_bits", 4},        {"type", "float"},      {"strategy", "group"},
                                  {"group_size", 32},     {"symmetric", true},    {"dynamic", false},
                                  {"actorder", nullptr},  {"block_structure", nullptr}, {"observer", "minmax"},
                                  {"observer_kwargs", nlohmann::json::object()}, {"scale_dtype", "torch.uint8"},
                                  {"zp_dtype", nullptr}};
  return {{"quant_method", "compressed-tensors"},
          {"format", "mxfp4-pack-quantized"},
          {"quantization_status", "compressed"},
          {"config_groups",
           {{"group_0",
             {{"targets", {"Linear"}}, {"weights", weights}, {"input_activations", nullptr}, {"output_activations", nullptr},
              {"format", "mxfp4-pack-quantized"}}}}},
          {"ignore", head_quantized ? nlohmann::json::array() : nlohmann::json::array({"lm_head"})},
          {"kv_cache_scheme", nullptr},
          {"sparsity_config", nlohmann::json::object()},
          {"transform_config", nlohmann::json::object()},
          {"global_compression_ratio", nullptr}};
}

// A byte-level BPE tokenizer.json with ids == bytes: mfqat's byte LM for Hugging Face tokenizers.
std::string byte_tokenizer_json() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level_token(static_cast<std::uint8_t>(b))] = b;
  const nlohmann::json bl = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  return nlohmann::json{{"version", "1.0"},
                        {"truncation", nullptr},
                        {"padding", nullptr},
                        {"added_tokens", nlohmann::json::array()},
                        {"normalizer", nullptr},
                        {"pre_tokenizer", bl},
                        {"post_processor", nullptr},
                        {"decoder", bl},
                        {"model",
                         {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                          {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
                          {"vocab", vocab}, {"merges", nlohmann::json::array()}}}}
      .dump();
}

void write_text(const fs::path& p, const std::string& text) { ckpt::write_file_atomic(p.string(), text.data(), text.size()); }

bool bf16_exact(const std::vector<float>& v) {
  for (float x : v)
    if (gguf::bf16_to_float(gguf::float_to_bf16(x)) != x) return false;
  return true;
}

}  // namespace

CtReport export_compressed_tensors(const model::Checkpoint& ck, const mx::Format& f, const std::string& out_dir) {
  const model::ModelConfig& mc = ck.config();
  if (mc.kind != model::Kind::Lm) throw std::invalid_argument(ck.path() + ": only language models export to compressed-tensors");
  if (!(gguf::is_e2m1(f) && f.block_size == 32))
    throw std::invalid_argument(f.name + (f.block_size != 32 ? " with blocks of " + std::to_string(f.block_size) : std::string()) +
                                ": compressed-tensors names one MX format, mxfp4-pack-quantized (E2M1, blocks of 32)");
  if (const std::string why = ck.derive_refusal(f); !why.empty()) throw std::invalid_argument(why);
  const fs::path out(out_dir);
  if (fs::exists(out)) throw std::runtime_error(out_dir + ": exists (compressed-tensors export writes a new directory)");
  const model::LmConfig& c = mc.lm;
  const std::vector<model::Param>& params = ck.params();

  // Dense tensors in BF16 when every one of them is exactly a BF16 (a Hugging Face model's own
  // weights), else F32: exact either way. One pass over the dense values decides.
  bool bf16 = true;
  for (const model::Param& p : params)
    if (!p.quantized && bf16) bf16 = bf16_exact(ck.values(p));
  CtReport rep;
  rep.dense_dtype = bf16 ? "BF16" : "F32";

  const fs::path tmp = out.parent_path() / (out.filename().string() + ".tmp." + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    ckpt::SafetensorsStreamWriter w((tmp / "model.safetensors").string());
    w.set_metadata("format", "pt");
    for (const model::Param& p : params) {
      const std::string n = model::hf_name(p.name);
      if (p.quantized) {
        const std::string module = n.substr(0, n.size() - std::strlen(".weight"));
        w.declare(module + ".weight_packed", ckpt::DType::U8, {p.shape[0], p.shape[1] / 2});
        w.declare(module + ".weight_scale", ckpt::DType::U8, {p.shape[0], f.blocks_per_row(p.shape[1])});
      } else {
        w.declare(n, bf16 ? ckpt::DType::BF16 : ckpt::DType::F32, p.shape);
      }
    }
    bool head_quantized = false;
    for (const model::Param& p : params) {
      const std::string n = model::hf_name(p.name);
      if (p.quantized) {
        if (p.shape[1] % 32 != 0) throw std::invalid_argument(n + ": " + std::to_string(p.shape[1]) + " inputs are not whole groups of 32");
        const mx::PackedMatrix m = ck.packed(p, f);
        if (const auto nan = std::find(m.scales.begin(), m.scales.end(), mx::kE8M0Nan); nan != m.scales.end())
          throw std::runtime_error(n + ": a NaN block (E8M0 255) has no compressed-tensors value");
        const std::string module = n.substr(0, n.size() - std::strlen(".weight"));
        w.write(module + ".weight_packed", m.elements);  // 4-bit LSB-first rows: element 2i low nibble
        w.write(module + ".weight_scale", m.scales);
        head_quantized = head_quantized || p.name == "head.weight";
        ++rep.quantized;
      } else {
        w.write(n, gguf::dense_bytes(ck.values(p), bf16 ? gguf::GgmlType::BF16 : gguf::GgmlType::F32, n));
        ++rep.dense;
      }
    }
    w.commit();
    nlohmann::json cfg = hf_config_json(c);
    cfg["torch_dtype"] = bf16 ? "bfloat16" : "float32";
    cfg["quantization_config"] = quantization_config(head_quantized);
    write_text(tmp / "config.json", cfg.dump(2) + "\n");
    if (const auto tj = ck.tokenizer_json()) {
      write_text(tmp / "tokenizer.json", *tj);
      if (ck.hf() && ck.hf()->tokenizer_config_json()) write_text(tmp / "tokenizer_config.json", *ck.hf()->tokenizer_config_json());
    } else {
      write_text(tmp / "tokenizer.json", byte_tokenizer_json());
    }
    for (const auto& e : fs::directory_iterator(tmp)) rep.bytes += fs::file_size(e.path());
    fs::rename(tmp, out);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  return rep;
}

}  // namespace mfqat::exporter
