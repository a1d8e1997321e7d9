#include "mfqat/model/config.h"

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
  return json{{"model", "lm"},          {"vocab", lm.vocab},     {"dim", lm.dim},
              {"n_layers", lm.n_layers}, {"n_heads", lm.n_heads}, {"ffn_dim", lm.hidden()},
              {"max_seq", lm.max_seq},   {"rope_theta", lm.rope_theta}, {"norm_eps", lm.norm_eps},
              {"quantize_head", lm.quantize_head}}
      .dump();
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
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    std::string w = e.what();
    for (auto& ch : w) ch = ch == '\n' ? ' ' : ch;
    throw std::invalid_argument(name + ": not valid JSON (" + w + ")");
  }
  if (!j.is_object()) throw std::invalid_argument(name + ": config must be a JSON object");
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
  r.only({"model", "vocab", "dim", "n_layers", "n_heads", "ffn_dim", "max_seq", "rope_theta", "norm_eps", "quantize_head"});
  LmConfig& l = c.lm;
  r.get_int("vocab", &l.vocab, 2, 1 << 20);
  r.get_int("dim", &l.dim, 8, 1 << 16);
  r.get_int("n_layers", &l.n_layers, 1, 256);
  r.get_int("n_heads", &l.n_heads, 1, 1024);
  r.get_int("ffn_dim", &l.ffn_dim, 0, 1 << 18);
  r.get_int("max_seq", &l.max_seq, 1, 1 << 16);
  r.get_double("rope_theta", &l.rope_theta);
  r.get_double("norm_eps", &l.norm_eps);
  r.get_bool("quantize_head", &l.quantize_head);
  if (l.dim % l.n_heads != 0) r.fail("n_heads = " + std::to_string(l.n_heads) + " does not divide dim = " + std::to_string(l.dim));
  if (l.head_dim() % 2 != 0) r.fail("head dimension " + std::to_string(l.head_dim()) + " must be even (rotary)");
  if (!(l.rope_theta > 1.0) || !(l.norm_eps > 0.0)) r.fail("rope_theta must be > 1 and norm_eps > 0");
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
  const std::int64_t d = lm.dim, h = lm.hidden();
  p.push_back({"tok_emb.weight", {lm.vocab, d}, false});
  for (std::int64_t i = 0; i < lm.n_layers; ++i) {
    const std::string n = "blocks." + std::to_string(i) + ".";
    p.push_back({n + "attn_norm.weight", {d}, false});
    p.push_back({n + "mlp_norm.weight", {d}, false});
    for (const char* w : {"wq", "wk", "wv", "wo"}) p.push_back({n + w + ".weight", {d, d}, true});
    p.push_back({n + "w1.weight", {h, d}, true});
    p.push_back({n + "w2.weight", {d, h}, true});
    p.push_back({n + "w3.weight", {h, d}, true});
  }
  p.push_back({"norm.weight", {d}, false});
  p.push_back({"head.weight", {lm.vocab, d}, lm.quantize_head});
  return p;
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
