// The engine: opening an anchor or master checkpoint (or making a synthetic anchor), deriving a
// format's weights into an arena (Slice-and-Scale straight from the anchor's bytes), the cache of
// derived formats (derivation outside the mutex, other callers of that format waiting on its
// future), and the pool of idle KV buffers. The forward pass: session.cpp.
#include "mfqat/runtime/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <future>
#include <stdexcept>

#include "mfqat/convert/slice.h"
#include "mfqat/hf/tokenizer.h"
#include "mfqat/mx/codec.h"
#include "mfqat/mx/parallel.h"

namespace mfqat::runtime {

namespace {

// n rounded up to a whole number of cache lines (each tensor's codes and scales start on one).
std::uint64_t round64(std::uint64_t n) { return (n + 63) / 64 * 64; }

// Where an MX tensor's parts go in a buffer (the synthetic anchor's, a format's arena): its codes
// at 0, its scales at `scales_at`, `total` bytes in all, each part on a cache line.
struct MxPlacement {
  std::uint64_t codes = 0, scales = 0, scales_at = 0, total = 0;
};
MxPlacement place(const mx::Format& f, std::int64_t rows, std::int64_t cols) {
  MxPlacement m;
  m.codes = rows * f.packed_row_bytes(cols);
  m.scales = rows * f.blocks_per_row(cols);
  m.scales_at = round64(m.codes);
  m.total = m.scales_at + round64(m.scales);
  return m;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// An anchor whose codes or scales are NaN/Inf cannot be served (the fast decoders assume finite
// codes): refuse it naming the tensor.
void check_finite(const MxView& m, const std::string& file, const std::string& name) {
  const mx::Format& f = *m.format;
  const std::int64_t n_scales = m.rows * f.blocks_per_row(m.cols);
  for (std::int64_t i = 0; i < n_scales; ++i) {
    if (m.scales[i] == mx::kE8M0Nan) throw std::runtime_error(file + ": tensor '" + name + "' has a NaN block scale (block " + std::to_string(i) + ")");
  }
  bool special[256] = {};
  bool any = false;
  for (std::uint32_t c = 0; c < (1u << f.bits); ++c) {
    special[c] = !std::isfinite(mx::decode_element(f, c));
    any |= special[c];
  }
  if (!any) return;
  const std::size_t rb = f.packed_row_bytes(m.cols);
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(m.cols));
  for (std::int64_t r = 0; r < m.rows; ++r) {
    mx::unpack_codes(m.elements + r * rb, m.cols, f.bits, codes.data());
    for (std::int64_t c = 0; c < m.cols; ++c) {
      if (special[codes[c]]) {
        throw std::runtime_error(file + ": tensor '" + name + "' has a NaN/Inf element at [" + std::to_string(r) + ", " + std::to_string(c) + "]");
      }
    }
  }
}

// A fast approximately-normal draw (sum of four uniforms, unit variance) for synthetic weights.
struct FastNormal {
  std::uint64_t s;
  float operator()() {
    float a = 0;
    for (int i = 0; i < 4; ++i) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      a += static_cast<float>(s >> 40) * (1.0f / 16777216.0f);
    }
    return (a - 2.0f) * 1.7320508f;
  }
};

}  // namespace

std::unique_ptr<Engine> Engine::open(const std::string& path, std::int64_t ctx) {
  std::unique_ptr<Engine> e(new Engine());
  e->ck_.emplace(model::Checkpoint::open(path, ctx));
  if (e->ck_->config().kind != model::Kind::Lm) throw std::invalid_argument(path + ": a classifier checkpoint; the runtime serves language models");
  e->cfg_ = e->ck_->config().lm;
  e->anchor_ = e->ck_->anchor_format();
  e->anchor_bytes_ = e->ck_->bytes();
  if (e->anchor_) {
    const auto& file = e->ck_->file();
    for (const auto& p : e->ck_->params()) {
      if (!p.quantized) continue;
      const ckpt::MxTensorInfo& m = *file.find_mx(p.name);
      const MxView v{&m.format, file.data(*m.elements).data(), file.data(*m.scales).data(), m.rows, m.cols};
      check_finite(v, path, p.name);
      e->anchor_views_[p.name] = v;
    }
  }
  e->init_fixed();
  if (const auto tj = e->ck_->tokenizer_json()) {
    e->tokenizer_ = std::make_shared<const hf::Tokenizer>(hf::Tokenizer::from_json(*tj, path + " (tokenizer.json)"));
    if (static_cast<std::int64_t>(e->tokenizer_->vocab_size()) > e->cfg_.vocab) {
      throw std::invalid_argument(path + ": the tokenizer has " + std::to_string(e->tokenizer_->vocab_size()) + " tokens, the model's vocabulary " +
                                  std::to_string(e->cfg_.vocab));
    }
  }
  return e;
}

std::unique_ptr<Engine> Engine::synthetic(const model::LmConfig& c, const mx::Format& anchor, std::uint64_t seed) {
  std::unique_ptr<Engine> e(new Engine());
  e->cfg_ = c;
  e->anchor_ = anchor;
  model::ModelConfig mc;
  mc.lm = c;
  const auto params = mc.params();
  std::vector<const model::Param*> q;
  for (const auto& p : params) {
    if (p.quantized) q.push_back(&p);
  }
  // One buffer for all of them (each tensor's codes and scales 64-byte aligned), like a format's
  // arena (Engine::build): the anchor's own format is served from it.
  std::vector<MxPlacement> pl(q.size());
  std::vector<std::uint64_t> at(q.size() + 1, 0);
  for (std::size_t i = 0; i < q.size(); ++i) {
    pl[i] = place(anchor, q[i]->shape[0], q[i]->shape[1]);
    at[i + 1] = at[i] + pl[i].total;
  }
  e->synthetic_ = std::make_unique<HugeBuffer>(at.back());
  // Weights ~ N(0, 1/cols) as at initialisation, generated and quantized row by row.
  parallel_for(static_cast<std::int64_t>(q.size()), 1, [&](std::int64_t b, std::int64_t end) {
    for (std::int64_t i = b; i < end; ++i) {
      const model::Param& p = *q[static_cast<std::size_t>(i)];
      const std::int64_t rows = p.shape[0], cols = p.shape[1];
      std::uint8_t* el = e->synthetic_->as<std::uint8_t>() + at[static_cast<std::size_t>(i)];
      std::uint8_t* sc = el + pl[static_cast<std::size_t>(i)].scales_at;
      FastNormal rng{seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(i) * 0xBF58476D1CE4E5B9ull + 1};
      const float sd = 1.0f / std::sqrt(static_cast<float>(cols));
      std::vector<float> row(static_cast<std::size_t>(cols));
      for (std::int64_t r = 0; r < rows; ++r) {
        for (auto& v : row) v = rng() * sd;
        mx::quantize(anchor, row.data(), 1, cols, el + r * anchor.packed_row_bytes(cols), sc + r * anchor.blocks_per_row(cols), {}, mx::Isa::Auto);
      }
    }
  });
  for (std::size_t i = 0; i < q.size(); ++i) {
    e->anchor_bytes_ += pl[i].codes + pl[i].scales;
    const std::uint8_t* el = e->synthetic_->as<std::uint8_t>() + at[i];
    e->anchor_views_[q[i]->name] = MxView{&*e->anchor_, el, el + pl[i].scales_at, q[i]->shape[0], q[i]->shape[1]};
  }
  // Fixed parts: small random embedding, unit norms, random fp32 head.
  FastNormal rng{seed + 7};
  e->emb_.resize(static_cast<std::size_t>(c.vocab * c.dim));
  for (auto& v : e->emb_) v = rng() * 0.02f;
  e->head_f32_.resize(static_cast<std::size_t>(c.vocab * c.dim));
  for (auto& v : e->head_f32_) v = rng() / std::sqrt(static_cast<float>(c.dim));
  e->norm_.assign(static_cast<std::size_t>(c.dim), 1.0f);
  e->attn_norms_.assign(static_cast<std::size_t>(c.n_layers), e->norm_);
  e->mlp_norms_.assign(static_cast<std::size_t>(c.n_layers), e->norm_);
  e->init_fixed();
  return e;
}

void Engine::init_fixed() {
  const auto& c = cfg_;
  if (ck_) {
    auto get = [&](const std::string& name) {
      const model::Param* p = ck_->find_param(name);
      if (!p) throw std::runtime_error(ck_->path() + ": tensor '" + name + "' is missing");
      return ck_->values(*p);
    };
    emb_ = get("tok_emb.weight");
    norm_ = get("norm.weight");
    for (std::int64_t l = 0; l < c.n_layers; ++l) {
      const std::string b = "blocks." + std::to_string(l) + ".";
      attn_norms_.push_back(get(b + "attn_norm.weight"));
      mlp_norms_.push_back(get(b + "mlp_norm.weight"));
      if (c.qkv_bias) biases_.push_back({get(b + "wq.bias"), get(b + "wk.bias"), get(b + "wv.bias")});
      if (c.qk_norm) qk_norms_.push_back({get(b + "q_norm.weight"), get(b + "k_norm.weight")});
    }
    if (c.tie_embeddings) {
      head_f32_ = emb_;  // the head is the embedding
    } else if (!c.quantize_head) {
      head_f32_ = get("head.weight");
    }
  } else {  // synthetic: zero biases, unit q/k norms where the config has them
    for (std::int64_t l = 0; l < c.n_layers; ++l) {
      if (c.qkv_bias) {
        biases_.push_back({std::vector<float>(static_cast<std::size_t>(c.q_dim())), std::vector<float>(static_cast<std::size_t>(c.kv_dim())),
                           std::vector<float>(static_cast<std::size_t>(c.kv_dim()))});
      }
      if (c.qk_norm) qk_norms_.push_back({std::vector<float>(static_cast<std::size_t>(c.head_dim()), 1.0f), std::vector<float>(static_cast<std::size_t>(c.head_dim()), 1.0f)});
    }
    if (c.tie_embeddings) head_f32_ = emb_;
  }
  // Rotary tables exactly as the trainer builds them (angles in double, then fp32).
  const std::int64_t half = c.head_dim() / 2;
  const std::vector<double> inv_freq = model::rope_inv_freq(c);
  cos_.resize(static_cast<std::size_t>(c.max_seq * half));
  sin_.resize(cos_.size());
  for (std::int64_t t = 0; t < c.max_seq; ++t) {
    for (std::int64_t i = 0; i < half; ++i) {
      const double a = static_cast<double>(t) * inv_freq[static_cast<std::size_t>(i)];
      cos_[t * half + i] = static_cast<float>(std::cos(a));
      sin_[t * half + i] = static_cast<float>(std::sin(a));
    }
  }
  kv_ = std::make_unique<KvPool>(static_cast<std::size_t>(kv_bytes(kKvPageTokens) / sizeof(float)), 0);
  kv_->set_idle_limit(kv_reserve_bytes(c.max_seq));  // one full context stays resident
}

mx::Format Engine::resolve(const std::string& name) const {
  if (name == "anchor") {
    if (!anchor_) throw std::invalid_argument("format 'anchor': this checkpoint is an fp32 master, not an anchor");
    return *anchor_;
  }
  mx::Format f = mx::find_format(name, anchor_ ? anchor_->block_size : mx::kDefaultBlockSize);
  if (anchor_) {
    const std::string why = convert::slice_refusal(*anchor_, f);
    if (!why.empty()) throw std::invalid_argument("format '" + name + "' cannot be derived from the " + anchor_->name + " anchor: " + why);
  }
  return f;
}

std::vector<std::string> Engine::formats() const {
  std::vector<std::string> out;
  for (const auto& f : mx::registry()) {
    if (!anchor_ || convert::slice_refusal(*anchor_, f.with_block_size(anchor_->block_size)).empty()) out.push_back(f.name);
  }
  out.insert(out.end(), plan_order_.begin(), plan_order_.end());
  out.push_back("fp32");
  return out;
}

std::shared_ptr<Weights> Engine::build(const std::optional<mx::Format>& f, const std::map<std::string, mx::Format>* per_linear) const {
  const auto t0 = std::chrono::steady_clock::now();
  auto w = std::make_shared<Weights>();
  w->format = f ? f->name : "fp32";
  w->bits_per_weight = f ? f->bits_per_weight() : 32.0;
  // Bytes of p in the arena: its codes and scales (or fp32 values), each on a cache line; none
  // for the anchor's own format (borrowed).
  // The format of one linear: its entry in per_linear, else f.
  auto fmt_of = [&](const model::Param& p) -> std::optional<mx::Format> {
    if (per_linear) {
      if (auto it = per_linear->find(p.name); it != per_linear->end()) return it->second;
    }
    return f;
  };
  auto borrows = [&](const std::optional<mx::Format>& pf) { return pf && anchor_ && pf->name == anchor_->name; };
  auto arena_bytes = [&](const model::Param& p) -> std::uint64_t {
    const std::int64_t rows = p.shape[0], cols = p.shape[1];
    const auto pf = fmt_of(p);
    if (borrows(pf)) return 0;
    if (!pf) return round64(static_cast<std::uint64_t>(rows * cols) * sizeof(float));
    return place(*pf, rows, cols).total;
  };
  const std::vector<model::Param> order = linear_params();  // the order they are built in
  std::uint64_t total = 0;
  for (const model::Param& p : order) total += arena_bytes(p);
  if (total > 0) w->arena = std::make_unique<HugeBuffer>(total);
  if (f) w->mx_format = *f;
  std::uint64_t used = 0;
  double bit_sum = 0, weight_sum = 0;  // the average bits per weight of a mixed plan
  auto make = [&](const model::Param& p) {
    Linear L;
    L.rows = p.shape[0];
    L.cols = p.shape[1];
    const std::optional<mx::Format> f = fmt_of(p);  // this linear's format
    const bool borrow = borrows(f);
    const mx::Format* view_format = nullptr;
    if (f) view_format = per_linear ? &w->linear_formats.emplace(p.name, *f).first->second : &*w->mx_format;
    bit_sum += static_cast<double>(L.rows * L.cols) * (f ? f->bits_per_weight() : 32.0);
    weight_sum += static_cast<double>(L.rows * L.cols);
    L.is_mx = f.has_value();
    if (borrow) {
      L.mx = anchor_views_.at(p.name);  // no copy of the anchor's own format
    } else {
      auto* dst = w->arena->as<std::uint8_t>() + used;
      used += arena_bytes(p);
      // From an anchor (a mapped file's or the synthetic one's bytes) straight into the arena;
      // from an fp32 master through its values.
      const MxView* a = anchor_ ? &anchor_views_.at(p.name) : nullptr;
      if (f) {
        std::uint8_t* sc = dst + place(*f, L.rows, L.cols).scales_at;
        if (a) {
          convert::slice(*a->format, a->elements, a->scales, a->rows, a->cols, *f, dst, sc);
        } else {
          const std::vector<float> v = ck_->values(p);
          mx::quantize(*f, v.data(), L.rows, L.cols, dst, sc);
        }
        L.mx = MxView{view_format, dst, sc, L.rows, L.cols};
      } else {
        auto* out = reinterpret_cast<float*>(dst);  // 2 MiB- or 64-byte-aligned storage
        if (a) {
          mx::dequantize(*a->format, a->elements, a->scales, a->rows, a->cols, out);
        } else {
          const std::vector<float> v = ck_->values(p);
          std::copy(v.begin(), v.end(), out);
        }
        L.f32 = out;
      }
    }
    if (L.is_mx && kernels_.repack) {
      L.panels = repack_q8(L.mx, kernels_);
      if (L.panels) w->panel_bytes += panel_bytes(*L.panels);
    }
    w->linear_bytes += L.bytes();
    return L;
  };
  std::size_t next = 0;
  for (std::int64_t l = 0; l < cfg_.n_layers; ++l) {
    LayerWeights lw;
    for (Linear* L : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w1, &lw.w2, &lw.w3}) *L = make(order[next++]);
    w->layers.push_back(lw);
  }
  if (cfg_.quantize_head) {
    w->head = make(order[next++]);
  } else {
    w->head.rows = cfg_.vocab;
    w->head.cols = cfg_.dim;
    w->head.f32 = head_f32_.data();
  }
  if (per_linear && weight_sum > 0) w->bits_per_weight = bit_sum / weight_sum;
  if (used != total) throw std::logic_error("weights arena: " + std::to_string(used) + " of " + std::to_string(total) + " bytes used");
  // with its rounding: what the cache holds (0: borrowed and not repacked)
  w->owned_bytes = (w->arena ? w->arena->bytes() : 0) + w->panel_bytes;
  w->derive_seconds = seconds_since(t0);
  return w;
}

std::vector<model::Param> Engine::linear_params() const {
  model::ModelConfig mc;
  mc.lm = cfg_;
  const auto params = mc.params();
  auto find = [&](const std::string& n) -> const model::Param& {
    for (const auto& p : params) {
      if (p.name == n) return p;
    }
    throw std::logic_error("no parameter " + n);
  };
  std::vector<model::Param> out;
  for (std::int64_t l = 0; l < cfg_.n_layers; ++l) {
    for (const char* n : {"wq", "wk", "wv", "wo", "w1", "w2", "w3"}) out.push_back(find("blocks." + std::to_string(l) + "." + n + ".weight"));
  }
  if (cfg_.quantize_head) out.push_back(find("head.weight"));
  return out;
}

std::vector<std::pair<std::string, std::int64_t>> Engine::linears() const {
  std::vector<std::pair<std::string, std::int64_t>> out;
  for (const auto& p : linear_params()) out.emplace_back(p.name, p.shape[0] * p.shape[1]);
  return out;
}

Engine::NamedPlan Engine::resolve_plan(const std::map<std::string, std::string>& plan, const std::string& rest) const {
  NamedPlan np;
  const auto lin = linears();
  for (const auto& entry : plan) {
    const std::string& param = entry.first;
    const std::string& fmt_name = entry.second;
    if (std::none_of(lin.begin(), lin.end(), [&](const auto& l) { return l.first == param; }))
      throw std::invalid_argument("no quantized linear '" + param + "' in this model");
    try {
      np.per.emplace(param, resolve(fmt_name));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(param + ": " + e.what());
    }
  }
  if (rest != "fp32" && !(rest == "anchor" && !anchor_)) np.rest = resolve(rest);
  double bits = 0, n = 0;
  for (const auto& [param, count] : lin) {
    const auto it = np.per.find(param);
    bits += static_cast<double>(count) * (it != np.per.end() ? it->second.bits_per_weight() : np.rest ? np.rest->bits_per_weight() : 32.0);
    n += static_cast<double>(count);
  }
  np.bits = n > 0 ? bits / n : 0;
  return np;
}

std::shared_ptr<const Weights> Engine::weights_mixed(const std::map<std::string, std::string>& plan, const std::string& rest,
                                                     const std::string& name) const {
  const NamedPlan np = resolve_plan(plan, rest);
  auto w = build(np.rest, &np.per);
  w->format = name;
  return w;
}

double Engine::add_plan(const std::string& name, const std::map<std::string, std::string>& plan, const std::string& rest) {
  if (name.empty() || name == "fp32" || name == "anchor" || name == "auto") throw std::invalid_argument("plan name '" + name + "' is reserved");
  if (plans_.count(name)) throw std::invalid_argument("plan '" + name + "' is already added");
  bool is_format = true;
  try {
    (void)mx::find_format(name);
  } catch (const std::invalid_argument&) {
    is_format = false;
  }
  if (is_format) throw std::invalid_argument("plan name '" + name + "' is a format's name");
  NamedPlan np;
  try {
    np = resolve_plan(plan, rest);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("plan '" + name + "': " + e.what());
  }
  const double bits = np.bits;
  plans_.emplace(name, std::move(np));
  plan_order_.push_back(name);
  return bits;
}

double Engine::bits_per_weight(const std::string& name) const {
  if (const auto it = plans_.find(name); it != plans_.end()) return it->second.bits;
  const std::string c = canonical_format(name);
  return c == "fp32" ? 32.0 : resolve(c).bits_per_weight();
}

std::shared_ptr<const Weights> Engine::weights(const std::string& name) {
  const auto plan = plans_.find(name);
  const NamedPlan* np = plan != plans_.end() ? &plan->second : nullptr;
  std::optional<mx::Format> f;
  if (np) {
    f = np->rest;
  } else if (name != "fp32" && !(name == "anchor" && !anchor_)) {
    f = resolve(name);
  }
  const std::string key = np ? name : f ? f->name : "fp32";
  std::promise<std::shared_ptr<const Weights>> mine;
  {
    std::unique_lock<std::mutex> lk(mu_);
    if (auto it = cache_.find(key); it != cache_.end()) {
      lru_.remove(key);
      lru_.push_front(key);
      return it->second;
    }
    if (auto it = building_.find(key); it != building_.end()) {
      // another caller derives this format: wait for it (outside the lock), and only for it
      std::shared_future<std::shared_ptr<const Weights>> other = it->second;
      lk.unlock();
      return other.get();  // rethrows that derivation's error
    }
    building_.emplace(key, mine.get_future().share());
  }
  // Derive outside mu_: it guards the KV pool and the cache listing too, which session starts,
  // ends and /metrics need while a large format is being derived (seconds on a large model).
  std::shared_ptr<const Weights> w;
  try {
    if (derive_observer_) derive_observer_(key);
    if (np) {
      auto b = build(f, &np->per);
      b->format = name;
      w = std::move(b);
    } else {
      w = build(f);
    }
  } catch (...) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      building_.erase(key);
    }
    mine.set_exception(std::current_exception());
    throw;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    building_.erase(key);
    cache_[key] = w;
    lru_.push_front(key);
    while (budget_ > 0 && lru_.size() > 1) {
      std::uint64_t total = 0;
      for (const auto& [k, v] : cache_) total += v->owned_bytes;
      if (total <= budget_) break;
      cache_.erase(lru_.back());  // sessions holding it keep it alive until they finish
      lru_.pop_back();
    }
  }
  mine.set_value(w);
  return w;
}

std::uint64_t Engine::base_bytes() const {
  std::uint64_t n = (emb_.size() + norm_.size() + head_f32_.size() + cos_.size() + sin_.size()) * 4;
  for (const auto& v : attn_norms_) n += v.size() * 4;
  for (const auto& v : mlp_norms_) n += v.size() * 4;
  return n;
}

std::vector<CacheEntry> Engine::cache() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<CacheEntry> out;
  for (const auto& k : lru_) {
    const auto& w = cache_.at(k);
    out.push_back({k, w->owned_bytes, w->derive_seconds});
  }
  return out;
}

std::uint64_t Engine::cache_bytes() const {
  std::uint64_t n = 0;
  for (const auto& c : cache()) n += c.bytes;
  return n;
}

void Engine::set_cache_budget(std::uint64_t bytes) {
  std::lock_guard<std::mutex> lk(mu_);
  budget_ = bytes;
}

void Engine::evict(const std::string& name) {
  const std::string key = canonical_format(name);
  std::lock_guard<std::mutex> lk(mu_);
  cache_.erase(key);
  lru_.remove(key);
}

// ---- the KV cache's sizes and its page pool (kv_pool.h) ----

std::uint64_t Engine::kv_bytes(std::int64_t tokens) const {
  return static_cast<std::uint64_t>(2 * cfg_.n_layers * tokens * cfg_.kv_dim()) * sizeof(float);
}

std::uint64_t Engine::kv_reserve_bytes(std::int64_t tokens) const {
  const std::int64_t t = std::min<std::int64_t>(std::max<std::int64_t>(tokens, 1), cfg_.max_seq);
  return static_cast<std::uint64_t>((t + kKvPageTokens - 1) / kKvPageTokens) * kv_->page_bytes();
}

void Engine::set_idle_kv_bytes(std::uint64_t bytes) { kv_->set_idle_limit(bytes); }
std::uint64_t Engine::idle_kv_bytes() const { return kv_->idle_bytes(); }
std::uint64_t Engine::held_kv_bytes() const { return kv_->held_bytes(); }

}  // namespace mfqat::runtime
