// The weights of a Hugging Face model directory, by mfqat parameter name.
#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "mfqat/ckpt/file.h"
#include "mfqat/model/hf.h"

namespace mfqat::model {

namespace {

using nlohmann::json;

bool is_file(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::optional<std::string> read_text_if_present(const std::string& p) {
  if (!is_file(p)) return std::nullopt;
  const auto b = ckpt::read_file(p);
  return std::string(b.begin(), b.end());
}

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string o = "[";
  for (std::size_t i = 0; i < s.size(); ++i) o += (i ? "," : "") + std::to_string(s[i]);
  return o + "]";
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const int e = (h >> 10) & 0x1F;
  const std::uint32_t m = h & 0x3FFu;
  if (e == 0) {  // zero or subnormal: m * 2^-24, exact in fp32
    const float v = std::ldexp(static_cast<float>(m), -24);
    return sign ? -v : v;
  }
  const std::uint32_t bits = e == 31 ? sign | 0x7F800000u | (m << 13) : sign | (static_cast<std::uint32_t>(e - 15 + 127) << 23) | (m << 13);
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// weight_map of model.safetensors.index.json: tensor -> shard file, refusing a tensor named twice
// (a JSON object with a repeated key parses without complaint).
std::map<std::string, std::string> read_index(const std::string& path) {
  const auto b = ckpt::read_file(path);
  const std::string text(b.begin(), b.end());
  std::set<std::string> seen;
  std::string dup, top;
  json j;
  try {
    j = json::parse(text, [&](int depth, json::parse_event_t ev, json& parsed) {
      if (ev == json::parse_event_t::key) {
        const std::string k = parsed.get<std::string>();
        if (depth == 1) top = k;
        if (depth == 2 && top == "weight_map" && !seen.insert(k).second && dup.empty()) dup = k;
      }
      return true;
    });
  } catch (const json::exception& e) {
    std::string w = e.what();
    for (auto& ch : w) ch = ch == '\n' ? ' ' : ch;
    throw std::runtime_error(path + ": not valid JSON (" + w + ")");
  }
  if (!dup.empty()) throw std::runtime_error(path + ": tensor '" + ckpt::printable(dup) + "' is named twice in weight_map");
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) throw std::runtime_error(path + ": no 'weight_map' object");
  std::map<std::string, std::string> out;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string()) throw std::runtime_error(path + ": weight_map['" + ckpt::printable(it.key()) + "'] is not a file name");
    const std::string f = it.value().get<std::string>();
    if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..") {
      throw std::runtime_error(path + ": weight_map['" + ckpt::printable(it.key()) + "'] = '" + ckpt::printable(f) + "' is not a file in the directory");
    }
    out[it.key()] = f;
  }
  return out;
}

}  // namespace

std::string hf_name(const std::string& n) {
  static const std::pair<const char*, const char*> kBlock[] = {
      {"attn_norm.weight", "input_layernorm.weight"},  {"mlp_norm.weight", "post_attention_layernorm.weight"},
      {"wq.weight", "self_attn.q_proj.weight"},        {"wk.weight", "self_attn.k_proj.weight"},
      {"wv.weight", "self_attn.v_proj.weight"},        {"wo.weight", "self_attn.o_proj.weight"},
      {"wq.bias", "self_attn.q_proj.bias"},            {"wk.bias", "self_attn.k_proj.bias"},
      {"wv.bias", "self_attn.v_proj.bias"},            {"q_norm.weight", "self_attn.q_norm.weight"},
      {"k_norm.weight", "self_attn.k_norm.weight"},    {"w1.weight", "mlp.gate_proj.weight"},
      {"w2.weight", "mlp.down_proj.weight"},           {"w3.weight", "mlp.up_proj.weight"},
  };
  if (n == "tok_emb.weight") return "model.embed_tokens.weight";
  if (n == "norm.weight") return "model.norm.weight";
  if (n == "head.weight") return "lm_head.weight";
  if (n.rfind("blocks.", 0) == 0) {
    const std::size_t dot = n.find('.', 7);
    if (dot != std::string::npos) {
      const std::string layer = n.substr(7, dot - 7), rest = n.substr(dot + 1);
      for (const auto& [m, h] : kBlock) {
        if (rest == m) return "model.layers." + layer + "." + h;
      }
    }
  }
  throw std::logic_error("no Hugging Face name for parameter '" + n + "'");
}

std::shared_ptr<const HfWeights> HfWeights::open(const std::string& dir_in, std::int64_t ctx) {
  auto w = std::shared_ptr<HfWeights>(new HfWeights());
  std::string dir = dir_in;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  w->dir_ = dir;
  const std::string cfg_path = dir + "/config.json";
  const auto cfg_text = read_text_if_present(cfg_path);
  if (!cfg_text) throw std::runtime_error(dir + ": no config.json (not a Hugging Face model directory)");
  w->config_.kind = Kind::Lm;
  try {
    w->config_.lm = hf_config(*cfg_text, cfg_path, ctx);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(ckpt::printable(e.what(), 1000));
  }
  // tensor name (Hugging Face) -> shard file name
  std::map<std::string, std::string> map;
  const std::string index_path = dir + "/model.safetensors.index.json";
  std::map<std::string, std::size_t> shard_of_file;
  if (is_file(index_path)) {
    map = read_index(index_path);
    for (const auto& [t, f] : map) {
      if (shard_of_file.count(f)) continue;
      const std::string p = dir + "/" + f;
      if (!is_file(p)) throw std::runtime_error(p + ": missing (a shard named by " + index_path + ")");
      shard_of_file[f] = w->shards_.size();
      w->shards_.push_back(ckpt::SafetensorsFile::open(p));
    }
  } else if (is_file(dir + "/model.safetensors")) {
    w->shards_.push_back(ckpt::SafetensorsFile::open(dir + "/model.safetensors"));
    shard_of_file["model.safetensors"] = 0;
    for (const auto& t : w->shards_[0].tensors()) map[t.name] = "model.safetensors";
  } else {
    throw std::runtime_error(dir + ": no model.safetensors or model.safetensors.index.json");
  }
  for (const auto& s : w->shards_) w->bytes_ += s.file_size();
  // Hugging Face name -> mfqat parameter
  const std::vector<Param> params = w->config_.params();
  std::map<std::string, const Param*> by_hf;
  for (const Param& p : params) by_hf[hf_name(p.name)] = &p;
  const LmConfig& c = w->config_.lm;
  for (const auto& [t, f] : map) {
    const std::size_t s = shard_of_file.at(f);
    const ckpt::SafetensorsFile& file = w->shards_[s];
    const ckpt::TensorInfo* info = file.find(t);
    if (!info) throw std::runtime_error(file.name() + ": tensor '" + ckpt::printable(t) + "' is not there (the index names it in this shard)");
    const auto it = by_hf.find(t);
    if (it == by_hf.end()) {
      // buffers, not weights (older Llama checkpoints), and a tied model's stored copy of the head
      if (t.find("rotary_emb.inv_freq") != std::string::npos) continue;
      if (c.tie_embeddings && t == "lm_head.weight") continue;
      throw std::runtime_error(file.name() + ": tensor '" + ckpt::printable(t) + "' is not part of a " + c.arch + " model as config.json describes it");
    }
    const Param& p = *it->second;
    if (info->dtype != ckpt::DType::F32 && info->dtype != ckpt::DType::BF16 && info->dtype != ckpt::DType::F16) {
      throw std::runtime_error(file.name() + ": tensor '" + t + "' is " + ckpt::dtype_name(info->dtype) + " (want BF16, F16 or F32)");
    }
    if (info->shape != p.shape) {
      throw std::runtime_error(file.name() + ": tensor '" + t + "' has shape " + shape_str(info->shape) + ", config.json implies " + shape_str(p.shape));
    }
    w->where_[p.name] = {s, info};
  }
  for (const Param& p : params) {
    if (!w->where_.count(p.name)) {
      throw std::runtime_error(dir + ": tensor '" + hf_name(p.name) + "' is missing" + (map.empty() ? "" : " (no shard has it)"));
    }
  }
  w->tokenizer_json_ = read_text_if_present(dir + "/tokenizer.json");
  w->tokenizer_config_ = read_text_if_present(dir + "/tokenizer_config.json");
  return w;
}

std::string HfWeights::source(const std::string& param) const {
  const auto it = where_.find(param);
  if (it == where_.end()) return dir_;
  return shards_[it->second.shard].name() + " '" + it->second.tensor->name + "'";
}

std::vector<float> HfWeights::values(const Param& p) const {
  const auto it = where_.find(p.name);
  if (it == where_.end()) throw std::logic_error(dir_ + ": no tensor for parameter '" + p.name + "'");
  const ckpt::SafetensorsFile& f = shards_[it->second.shard];
  const ckpt::TensorInfo& t = *it->second.tensor;
  const auto bytes = f.data(t);
  std::vector<float> v(static_cast<std::size_t>(t.numel()));
  if (t.dtype == ckpt::DType::F32) {
    std::memcpy(v.data(), bytes.data(), v.size() * 4);
  } else {
    for (std::size_t i = 0; i < v.size(); ++i) {
      std::uint16_t h;
      std::memcpy(&h, bytes.data() + 2 * i, 2);
      if (t.dtype == ckpt::DType::BF16) {
        const std::uint32_t b = static_cast<std::uint32_t>(h) << 16;
        std::memcpy(&v[i], &b, 4);
      } else {
        v[i] = half_to_float(h);
      }
    }
  }
  f.release(t);  // read once: keep the resident set to the tensors in use
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) throw std::runtime_error(f.name() + ": tensor '" + t.name + "' has a non-finite value at element " + std::to_string(i));
  }
  return v;
}

bool is_hf_dir(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && is_file(path + "/config.json");
}

}  // namespace mfqat::model
