#include "json_object.h"
#include "mfqat/model/config.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

namespace mfqat::model {

using nlohmann::json;

std::string ModelConfig::to_json() const {
  if (kind == Kind::Mlp) {
    return json{{"model", "mlp"}, {"inputs", mlp.inputs}, {"hidden", mlp.hidden}, {"classes", mlp.classes},
                {"quantize_head", mlp.quantize_head}}
        .dump();
  }
  json j{{"model", "lm"},          {"vocab", lm.vocab},     {"dim", lm.dim},
         {"n_layers", lm.n_layers}, {"n_heads", lm.n_heads}, {"ffn_dim", lm.hidden()},
         {"max_seq", lm.max_seq},   {"rope_theta", lm.rope_theta}, {"norm_eps", lm.norm_eps},
         {"quantize_head", lm.quantize_head}};
  // The imported architectures' fields, only where they differ from mfqat's own LM (so that its
  // checkpoints keep the config they always had).
  if (lm.arch != "mfqat") j["arch"] = lm.arch;
  if (lm.n_kv_heads > 0 && lm.n_kv_heads != lm.n_heads) j["n_kv_heads"] = lm.n_kv_heads;
  if (lm.head_size > 0 && lm.head_size * lm.n_heads != lm.dim) j["head_dim"] = lm.head_size;
  if (lm.qkv_bias) j["qkv_bias"] = true;
  if (lm.qk_norm) j["qk_norm"] = true;
  if (lm.tie_embeddings) j["tie_embeddings"] = true;
  if (lm.rope_scaling.factor > 0) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", lm.rope_scaling.factor},
                         {"low_freq_factor", lm.rope_scaling.low_freq_factor},
                         {"high_freq_factor", lm.rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", lm.rope_scaling.original_max_position}};
  }
  return j.dump();
}

namespace {

struct Reader {
  const json& j;
  const std::string& name;
  [[noreturn]] void fail(const std::string& why) const { throw std::invalid_argument(name + ": " + why); }
  void only(std::initializer_list<const char*> known) const {
    for (auto it = j.begin(); it != j.end(); ++it) {
      bool ok = false;
      for (const char* k : known) ok |= it.key() == k;
      if (!ok) fail("unknown field '" + it.key() + "'");
    }
  }
  void get_int(const char* k, std::int64_t* v, std::int64_t lo, std::int64_t hi) const {
    if (!j.contains(k)) return;
    if (!j[k].is_number_integer()) fail(std::string(k) + " must be an integer");
    check(k, j[k].get<std::int64_t>(), lo, hi);
    *v = j[k].get<std::int64_t>();
  }
  void check(const std::string& k, std::int64_t v, std::int64_t lo, std::int64_t hi) const {
    if (v < lo || v > hi) fail(k + " = " + std::to_string(v) + " is out of range " + std::to_string(lo) + ".." + std::to_string(hi));
  }
  void get_double(const char* k, double* v) const {
    if (!j.contains(k)) return;
    if (!j[k].is_number()) fail(std::string(k) + " must be a number");
    *v = j[k].get<double>();
  }
  void get_bool(const char* k, bool* v) const {
    if (!j.contains(k)) return;
    if (!j[k].is_boolean()) fail(std::string(k) + " must be true or false");
    *v = j[k].get<bool>();
  }
};

}  // namespace

ModelConfig ModelConfig::from_json(const std::string& text, const std::string& name) {
  const json j = detail::parse_json_object(text, name);
  const Reader r{j, name};
  ModelConfig c;
  std::string model = "lm";
  if (j.contains("model")) {
    if (!j["model"].is_string()) r.fail("model must be \"lm\" or \"mlp\"");
    model = j["model"].get<std::string>();
  }
  if (model == "mlp") {
    c.kind = Kind::Mlp;
    r.only({"model", "inputs", "hidden", "classes", "quantize_head"});
    r.get_int("inputs", &c.mlp.inputs, 1, 1 << 24);
    r.get_int("classes", &c.mlp.classes, 2, 1 << 20);
    r.get_bool("quantize_head", &c.mlp.quantize_head);
    if (j.contains("hidden")) {
      if (!j["hidden"].is_array()) r.fail("hidden must be a list of layer widths");
      c.mlp.hidden.clear();
      for (const auto& h : j["hidden"]) {
        if (!h.is_number_integer()) r.fail("hidden must be a list of integers");
        r.check("hidden width", h.get<std::int64_t>(), 1, 1 << 20);
        c.mlp.hidden.push_back(h.get<std::int64_t>());
      }
      if (c.mlp.hidden.size() > 64) r.fail("hidden has more than 64 layers");
    }
    return c;
  }
  if (model != "lm") r.fail("model = '" + model + "' is not one of lm, mlp");
  r.only({"model", "vocab", "dim", "n_layers", "n_heads", "ffn_dim", "max_seq", "rope_theta", "norm_eps", "quantize_head", "arch", "n_kv_heads",
          "head_dim", "qkv_bias", "qk_norm", "tie_embeddings", "rope_scaling"});
  LmConfig& l = c.lm;
  if (j.contains("arch")) {
    if (!j["arch"].is_string()) r.fail("arch must be a string");
    l.arch = j["arch"].get<std::string>();
    if (l.arch != "mfqat" && l.arch != "llama" && l.arch != "mistral" && l.arch != "qwen2" && l.arch != "qwen3") {
      r.fail("arch = '" + l.arch + "' is not one of mfqat, llama, mistral, qwen2, qwen3");
    }
  }
  r.get_int("vocab", &l.vocab, 2, 1 << 22);
  r.get_int("dim", &l.dim, 8, 1 << 16);
  r.get_int("n_layers", &l.n_layers, 1, 512);
  r.get_int("n_heads", &l.n_heads, 1, 1024);
  r.get_int("n_kv_heads", &l.n_kv_heads, 0, 1024);
  r.get_int("head_dim", &l.head_size, 0, 1 << 12);
  r.get_int("ffn_dim", &l.ffn_dim, 0, 1 << 18);
  r.get_int("max_seq", &l.max_seq, 1, 1 << 20);
  r.get_double("rope_theta", &l.rope_theta);
  r.get_double("norm_eps", &l.norm_eps);
  r.get_bool("quantize_head", &l.quantize_head);
  r.get_bool("qkv_bias", &l.qkv_bias);
  r.get_bool("qk_norm", &l.qk_norm);
  r.get_bool("tie_embeddings", &l.tie_embeddings);
  if (j.contains("rope_scaling")) {
    const json& rs = j["rope_scaling"];
    if (!rs.is_object()) r.fail("rope_scaling must be an object");
    const Reader rr{rs, name};
    rr.only({"rope_type", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"});
    if (!rs.contains("rope_type") || rs["rope_type"] != "llama3") r.fail("rope_scaling: rope_type must be \"llama3\"");
    rr.get_double("factor", &l.rope_scaling.factor);
    rr.get_double("low_freq_factor", &l.rope_scaling.low_freq_factor);
    rr.get_double("high_freq_factor", &l.rope_scaling.high_freq_factor);
    rr.get_int("original_max_position_embeddings", &l.rope_scaling.original_max_position, 1, 1 << 24);
    if (!(l.rope_scaling.factor >= 1) || !(l.rope_scaling.high_freq_factor > l.rope_scaling.low_freq_factor) || !(l.rope_scaling.low_freq_factor > 0)) {
      r.fail("rope_scaling: want factor >= 1 and high_freq_factor > low_freq_factor > 0");
    }
  }
  if (l.head_size == 0 && l.dim % l.n_heads != 0) r.fail("n_heads = " + std::to_string(l.n_heads) + " does not divide dim = " + std::to_string(l.dim));
  if (l.head_dim() % 2 != 0) r.fail("head dimension " + std::to_string(l.head_dim()) + " must be even (rotary)");
  if (l.n_heads % l.kv_heads() != 0) r.fail("n_kv_heads = " + std::to_string(l.kv_heads()) + " does not divide n_heads = " + std::to_string(l.n_heads));
  if (!(l.rope_theta > 1.0) || !(l.norm_eps > 0.0)) r.fail("rope_theta must be > 1 and norm_eps > 0");
  if (l.tie_embeddings && l.quantize_head) r.fail("a tied head is the embedding: it cannot be quantized (quantize_head with tie_embeddings)");
  return c;
}

std::vector<Param> ModelConfig::params() const {
  std::vector<Param> p;
  if (kind == Kind::Mlp) {
    std::int64_t in = mlp.inputs;
    for (std::size_t i = 0; i < mlp.hidden.size(); ++i) {
      const std::string n = "layers." + std::to_string(i) + ".";
      p.push_back({n + "weight", {mlp.hidden[i], in}, true});
      p.push_back({n + "bias", {mlp.hidden[i]}, false});
      in = mlp.hidden[i];
    }
    p.push_back({"head.weight", {mlp.classes, in}, mlp.quantize_head});
    p.push_back({"head.bias", {mlp.classes}, false});
    return p;
  }
  const std::int64_t d = lm.dim, h = lm.hidden(), qd = lm.q_dim(), kvd = lm.kv_dim();
  p.push_back({"tok_emb.weight", {lm.vocab, d}, false});
  for (std::int64_t i = 0; i < lm.n_layers; ++i) {
    const std::string n = "blocks." + std::to_string(i) + ".";
    p.push_back({n + "attn_norm.weight", {d}, false});
    p.push_back({n + "mlp_norm.weight", {d}, false});
    p.push_back({n + "wq.weight", {qd, d}, true});
    p.push_back({n + "wk.weight", {kvd, d}, true});
    p.push_back({n + "wv.weight", {kvd, d}, true});
    p.push_back({n + "wo.weight", {d, qd}, true});
    p.push_back({n + "w1.weight", {h, d}, true});
    p.push_back({n + "w2.weight", {d, h}, true});
    p.push_back({n + "w3.weight", {h, d}, true});
    if (lm.qkv_bias) {
      p.push_back({n + "wq.bias", {qd}, false});
      p.push_back({n + "wk.bias", {kvd}, false});
      p.push_back({n + "wv.bias", {kvd}, false});
    }
    if (lm.qk_norm) {
      p.push_back({n + "q_norm.weight", {lm.head_dim()}, false});
      p.push_back({n + "k_norm.weight", {lm.head_dim()}, false});
    }
  }
  p.push_back({"norm.weight", {d}, false});
  if (!lm.tie_embeddings) p.push_back({"head.weight", {lm.vocab, d}, lm.quantize_head});
  return p;
}

std::vector<double> rope_inv_freq(const LmConfig& c) {
  const std::int64_t hd = c.head_dim(), half = hd / 2;
  std::vector<double> inv(static_cast<std::size_t>(half));
  const RopeScaling& s = c.rope_scaling;
  constexpr double kPi = 3.14159265358979323846;
  for (std::int64_t i = 0; i < half; ++i) {
    double f = std::pow(c.rope_theta, -static_cast<double>(i) * 2.0 / static_cast<double>(hd));
    if (s.factor > 0) {  // transformers' _compute_llama3_parameters
      const double old_ctx = static_cast<double>(s.original_max_position);
      const double low_wavelen = old_ctx / s.low_freq_factor, high_wavelen = old_ctx / s.high_freq_factor;
      const double wavelen = 2 * kPi / f;
      if (wavelen > low_wavelen) {
        f /= s.factor;
      } else if (wavelen >= high_wavelen) {  // between: blend
        const double smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
    inv[static_cast<std::size_t>(i)] = f;
  }
  return inv;
}

std::int64_t ModelConfig::param_count() const {
  std::int64_t n = 0;
  for (const auto& p : params()) {
    std::int64_t k = 1;
    for (auto s : p.shape) k *= s;
    n += k;
  }
  return n;
}

}  // namespace mfqat::model
