#include "mfqat/train/model.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace mfqat::train {

using nlohmann::json;

RmsNormImpl::RmsNormImpl(std::int64_t dim, double eps) : eps_(eps) { weight = register_parameter("weight", torch::ones({dim})); }

torch::Tensor RmsNormImpl::forward(const torch::Tensor& x) {
  return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps_) * weight;
}

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const std::int64_t T = x.size(1), half = x.size(3) / 2;
  const torch::Tensor c = cos.slice(0, 0, T).view({1, T, 1, half}), s = sin.slice(0, 0, T).view({1, T, 1, half});
  const torch::Tensor x1 = x.slice(3, 0, half), x2 = x.slice(3, half, 2 * half);
  return torch::cat({x1 * c - x2 * s, x1 * s + x2 * c}, 3);
}

BlockImpl::BlockImpl(const LmConfig& c) : n_heads_(c.n_heads), n_kv_heads_(c.kv_heads()), head_dim_(c.head_dim()) {
  attn_norm = register_module("attn_norm", RmsNorm(c.dim, c.norm_eps));
  mlp_norm = register_module("mlp_norm", RmsNorm(c.dim, c.norm_eps));
  wq = register_module("wq", QuantLinear(c.dim, c.q_dim(), c.qkv_bias));
  wk = register_module("wk", QuantLinear(c.dim, c.kv_dim(), c.qkv_bias));
  wv = register_module("wv", QuantLinear(c.dim, c.kv_dim(), c.qkv_bias));
  wo = register_module("wo", QuantLinear(c.q_dim(), c.dim));
  w1 = register_module("w1", QuantLinear(c.dim, c.hidden()));
  w2 = register_module("w2", QuantLinear(c.hidden(), c.dim));
  w3 = register_module("w3", QuantLinear(c.dim, c.hidden()));
  if (c.qk_norm) {  // Qwen3: RMSNorm over each head's q and k before the rotation
    q_norm = register_module("q_norm", RmsNorm(c.head_dim(), c.norm_eps));
    k_norm = register_module("k_norm", RmsNorm(c.head_dim(), c.norm_eps));
  }
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const std::int64_t B = x.size(0), T = x.size(1);
  const torch::Tensor h = attn_norm->forward(x);
  torch::Tensor q = wq->forward(h).view({B, T, n_heads_, head_dim_});
  torch::Tensor k = wk->forward(h).view({B, T, n_kv_heads_, head_dim_});
  if (q_norm) {
    q = q_norm->forward(q);
    k = k_norm->forward(k);
  }
  q = apply_rope(q, cos, sin).transpose(1, 2);
  k = apply_rope(k, cos, sin).transpose(1, 2);
  torch::Tensor v = wv->forward(h).view({B, T, n_kv_heads_, head_dim_}).transpose(1, 2);
  if (n_kv_heads_ != n_heads_) {  // grouped-query attention: query head i reads kv head i / group
    k = k.repeat_interleave(n_heads_ / n_kv_heads_, 1);
    v = v.repeat_interleave(n_heads_ / n_kv_heads_, 1);
  }
  torch::Tensor att = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(head_dim_));
  const torch::Tensor mask = torch::ones({T, T}, torch::kBool).triu(1);
  att = torch::softmax(att.masked_fill(mask, -std::numeric_limits<float>::infinity()), -1);
  const torch::Tensor o = torch::matmul(att, v).transpose(1, 2).contiguous().view({B, T, n_heads_ * head_dim_});
  const torch::Tensor x2 = x + wo->forward(o);
  const torch::Tensor m = mlp_norm->forward(x2);
  return x2 + w2->forward(torch::silu(w1->forward(m)) * w3->forward(m));
}

TransformerLmImpl::TransformerLmImpl(const LmConfig& c) : cfg_(c) {
  tok_emb = register_module("tok_emb", torch::nn::Embedding(c.vocab, c.dim));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < c.n_layers; ++i) blocks->push_back(Block(c));
  norm = register_module("norm", RmsNorm(c.dim, c.norm_eps));
  if (!c.tie_embeddings) head = register_module("head", QuantLinear(c.dim, c.vocab));
  torch::nn::init::normal_(tok_emb->weight, 0.0, 0.02);
  const std::vector<double> inv_freq = model::rope_inv_freq(c);
  const torch::Tensor inv = torch::tensor(inv_freq, torch::kFloat64);
  const torch::Tensor ang = torch::outer(torch::arange(0, c.max_seq, torch::kFloat64), inv);
  cos_ = register_buffer("rope_cos", torch::cos(ang).to(torch::kFloat32));
  sin_ = register_buffer("rope_sin", torch::sin(ang).to(torch::kFloat32));
}

torch::Tensor TransformerLmImpl::forward(const torch::Tensor& tokens) {
  if (tokens.dim() != 2 || tokens.size(1) > cfg_.max_seq) {
    throw std::invalid_argument("tokens must be [batch, time] with time <= max_seq = " + std::to_string(cfg_.max_seq));
  }
  torch::Tensor x = tok_emb->forward(tokens);
  for (const auto& b : *blocks) x = b->as<Block>()->forward(x, cos_, sin_);
  if (cfg_.tie_embeddings) return torch::nn::functional::linear(norm->forward(x), tok_emb->weight);
  return head->forward(norm->forward(x));
}

std::vector<std::pair<std::string, QuantLinear>> TransformerLmImpl::quant_linears() {
  std::vector<std::pair<std::string, QuantLinear>> out;
  for (std::size_t i = 0; i < blocks->size(); ++i) {
    auto b = blocks[i]->as<Block>();
    const std::string p = "blocks." + std::to_string(i) + ".";
    for (auto [n, l] : {std::pair{"wq", b->wq}, {"wk", b->wk}, {"wv", b->wv}, {"wo", b->wo}, {"w1", b->w1}, {"w2", b->w2}, {"w3", b->w3}}) {
      out.emplace_back(p + n + ".weight", l);
    }
  }
  if (cfg_.quantize_head && head) out.emplace_back("head.weight", head);
  return out;
}

ModelConfig TransformerLmImpl::model_config() const {
  ModelConfig c;
  c.kind = model::Kind::Lm;
  c.lm = cfg_;
  return c;
}

void QuantModelImpl::set_format(const std::optional<mx::Format>& f, const FakeQuantOptions& opt) {
  for (auto& [name, l] : quant_linears()) {
    l->set_format(f);
    l->set_options(opt);
  }
}

MlpClassifierImpl::MlpClassifierImpl(const MlpConfig& c) : cfg_(c) {
  layers = register_module("layers", torch::nn::ModuleList());
  std::int64_t in = c.inputs;
  for (const std::int64_t h : c.hidden) {
    layers->push_back(QuantLinear(in, h, /*bias=*/true));
    in = h;
  }
  head = register_module("head", QuantLinear(in, c.classes, /*bias=*/true));
}

torch::Tensor MlpClassifierImpl::forward(const torch::Tensor& x) {
  if (x.dim() != 2 || x.size(1) != cfg_.inputs) {
    throw std::invalid_argument("input must be [batch, " + std::to_string(cfg_.inputs) + "]");
  }
  torch::Tensor h = x;
  for (const auto& l : *layers) h = torch::relu(l->as<QuantLinear>()->forward(h));
  return head->forward(h);
}

std::vector<std::pair<std::string, QuantLinear>> MlpClassifierImpl::quant_linears() {
  std::vector<std::pair<std::string, QuantLinear>> out;
  for (std::size_t i = 0; i < layers->size(); ++i) {
    out.emplace_back("layers." + std::to_string(i) + ".weight", QuantLinear(std::dynamic_pointer_cast<QuantLinearImpl>(layers->ptr(i))));
  }
  if (cfg_.quantize_head) out.emplace_back("head.weight", head);
  return out;
}

ModelConfig MlpClassifierImpl::model_config() const {
  ModelConfig c;
  c.kind = model::Kind::Mlp;
  c.mlp = cfg_;
  return c;
}

std::shared_ptr<QuantModelImpl> make_model(const ModelConfig& c) {
  if (c.kind == model::Kind::Mlp) return MlpClassifier(c.mlp).ptr();
  return TransformerLm(c.lm).ptr();
}

}  // namespace mfqat::train
