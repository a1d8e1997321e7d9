#include "mfqat/runtime/engine.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <future>
#include <numeric>
#include <stdexcept>

#include "mfqat/convert/slice.h"
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

float silu(float x) { return x / (1.0f + std::exp(-x)); }

// Attention's inner products over one head (head_dim floats), written with 16 independent
// partial sums so that the compiler vectorizes them without reassociating a reduction, and
// cloned per instruction set (chosen at load time by the dynamic linker).
// (Not under the sanitizers: their run time is not up yet when the dynamic linker runs the resolvers.)
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define MFQAT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MFQAT_CLONES
#endif
MFQAT_CLONES float dot(const float* a, const float* b, std::int64_t n) {
  float acc[16] = {};
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  }
  for (; i < n; ++i) acc[0] += a[i] * b[i];
  float s = 0;
  for (float v : acc) s += v;
  return s;
}
MFQAT_CLONES void axpy(float alpha, const float* x, float* y, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void rmsnorm(const float* x, const float* w, std::int64_t dim, double eps, float* out) {
  double ss = 0;
  for (std::int64_t i = 0; i < dim; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
  for (std::int64_t i = 0; i < dim; ++i) out[i] = x[i] * r * w[i];
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

std::uint64_t Linear::bytes() const {
  if (!is_mx) return static_cast<std::uint64_t>(rows * cols) * 4;
  return static_cast<std::uint64_t>(mx.rows) * (mx.format->packed_row_bytes(mx.cols) + mx.format->blocks_per_row(mx.cols));
}

void Linear::forward(const float* x, std::int64_t n, float* y, const KernelOptions& k) const {
  if (is_mx) {
    if (n == 1 && k.int8_acts && q8_supported(*mx.format)) {
      gemv_q8(mx, x, y, k);
    } else if (n == 1) {
      gemv(mx, x, y, k);
    } else {
      gemm(mx, x, n, y, k);
    }
  } else if (n == 1) {
    gemv_f32(f32, rows, cols, x, y);
  } else {
    gemm_f32(f32, rows, cols, x, n, y);
  }
}

void Linear::forward_shared(std::initializer_list<std::pair<const Linear*, float*>> ls, const float* x, std::int64_t n, const KernelOptions& k,
                            bool shared) {
  // gemv_shared takes matrices of one format (name and block size) and one width; other sets
  // run one forward each
  if (ls.size() == 0) return;
  const Linear& l0 = *ls.begin()->first;
  bool fused = shared && n == 1 && !k.int8_acts && ls.size() > 1 && l0.is_mx;
  for (const auto& [l, y] : ls) {
    fused = fused && l->is_mx && l->mx.cols == l0.mx.cols && l->mx.format->name == l0.mx.format->name &&
            l->mx.format->block_size == l0.mx.format->block_size;
  }
  if (!fused) {
    for (const auto& [l, y] : ls) l->forward(x, n, y, k);
    return;
  }
  MxView ws[4];
  float* ys[4];
  std::size_t m = 0;
  for (const auto& [l, y] : ls) {
    if (m == 4) throw std::invalid_argument("forward_shared: at most 4 linears");
    ws[m] = l->mx;
    ys[m++] = y;
  }
  gemv_shared({ws, m}, x, {ys, m}, k);
}

std::unique_ptr<Engine> Engine::open(const std::string& path) {
  std::unique_ptr<Engine> e(new Engine());
  e->ck_.emplace(model::Checkpoint::open(path));
  if (e->ck_->config().kind != model::Kind::Lm) throw std::invalid_argument(path + ": a classifier checkpoint; the runtime serves language models");
  e->cfg_ = e->ck_->config().lm;
  e->anchor_ = e->ck_->anchor_format();
  e->anchor_bytes_ = e->ck_->file().file_size();
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
      attn_norms_.push_back(get("blocks." + std::to_string(l) + ".attn_norm.weight"));
      mlp_norms_.push_back(get("blocks." + std::to_string(l) + ".mlp_norm.weight"));
    }
    if (!c.quantize_head) head_f32_ = get("head.weight");
  }
  // Rotary tables exactly as the trainer builds them (angles in double, then fp32).
  const std::int64_t half = c.head_dim() / 2;
  cos_.resize(static_cast<std::size_t>(c.max_seq * half));
  sin_.resize(cos_.size());
  for (std::int64_t t = 0; t < c.max_seq; ++t) {
    for (std::int64_t i = 0; i < half; ++i) {
      const double inv = std::pow(c.rope_theta, -static_cast<double>(i) * 2.0 / static_cast<double>(c.head_dim()));
      const double a = static_cast<double>(t) * inv;
      cos_[t * half + i] = static_cast<float>(std::cos(a));
      sin_[t * half + i] = static_cast<float>(std::sin(a));
    }
  }
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
  out.push_back("fp32");
  return out;
}

std::shared_ptr<Weights> Engine::build(const std::optional<mx::Format>& f) const {
  const auto t0 = std::chrono::steady_clock::now();
  auto w = std::make_shared<Weights>();
  w->format = f ? f->name : "fp32";
  w->bits_per_weight = f ? f->bits_per_weight() : 32.0;
  model::ModelConfig mc;
  mc.lm = cfg_;
  const auto params = mc.params();
  // Bytes of p in the arena: its codes and scales (or fp32 values), each on a cache line; none
  // for the anchor's own format (borrowed).
  const bool borrow = f && anchor_ && f->name == anchor_->name;
  auto arena_bytes = [&](const model::Param& p) -> std::uint64_t {
    const std::int64_t rows = p.shape[0], cols = p.shape[1];
    if (borrow) return 0;
    if (!f) return round64(static_cast<std::uint64_t>(rows * cols) * sizeof(float));
    return place(*f, rows, cols).total;
  };
  auto find = [&](const std::string& n) -> const model::Param& {
    for (const auto& p : params) {
      if (p.name == n) return p;
    }
    throw std::logic_error("no parameter " + n);
  };
  // The linears in the order they are built: per layer wq wk wv wo w1 w2 w3, then the head.
  std::vector<const model::Param*> order;
  for (std::int64_t l = 0; l < cfg_.n_layers; ++l) {
    for (const char* n : {"wq", "wk", "wv", "wo", "w1", "w2", "w3"}) order.push_back(&find("blocks." + std::to_string(l) + "." + n + ".weight"));
  }
  if (cfg_.quantize_head) order.push_back(&find("head.weight"));
  std::uint64_t total = 0;
  for (const model::Param* p : order) total += arena_bytes(*p);
  if (total > 0) w->arena = std::make_unique<HugeBuffer>(total);
  if (f) w->mx_format = *f;
  std::uint64_t used = 0;
  auto make = [&](const model::Param& p) {
    Linear L;
    L.rows = p.shape[0];
    L.cols = p.shape[1];
    L.is_mx = f.has_value();
    if (borrow) {
      L.mx = anchor_views_.at(p.name);  // no copy of the anchor's own format
    } else {
      auto* dst = w->arena->as<std::uint8_t>() + used;
      used += arena_bytes(p);
      if (f) {
        const MxPlacement m_at = place(*f, L.rows, L.cols);
        std::uint8_t* sc = dst + m_at.scales_at;
        if (ck_) {
          const mx::PackedMatrix m = ck_->packed(p, *f);
          if (m.elements.size() != m_at.codes || m.scales.size() != m_at.scales) throw std::logic_error("derived " + p.name + " has an unexpected size");
          std::copy(m.elements.begin(), m.elements.end(), dst);
          std::copy(m.scales.begin(), m.scales.end(), sc);
        } else {  // straight from the synthetic anchor into the arena
          const MxView& a = anchor_views_.at(p.name);
          convert::slice(*a.format, a.elements, a.scales, a.rows, a.cols, *f, dst, sc);
        }
        L.mx = MxView{&*w->mx_format, dst, sc, L.rows, L.cols};
      } else {
        auto* out = reinterpret_cast<float*>(dst);  // 2 MiB- or 64-byte-aligned storage
        if (ck_) {
          const std::vector<float> v = ck_->values(p);
          std::copy(v.begin(), v.end(), out);
        } else {
          const MxView& a = anchor_views_.at(p.name);
          mx::dequantize(*a.format, a.elements, a.scales, a.rows, a.cols, out);
        }
        L.f32 = out;
      }
    }
    w->linear_bytes += L.bytes();
    return L;
  };
  std::size_t next = 0;
  for (std::int64_t l = 0; l < cfg_.n_layers; ++l) {
    LayerWeights lw;
    for (Linear* L : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w1, &lw.w2, &lw.w3}) *L = make(*order[next++]);
    w->layers.push_back(lw);
  }
  if (cfg_.quantize_head) {
    w->head = make(*order[next++]);
  } else {
    w->head.rows = cfg_.vocab;
    w->head.cols = cfg_.dim;
    w->head.f32 = head_f32_.data();
  }
  if (used != total) throw std::logic_error("weights arena: " + std::to_string(used) + " of " + std::to_string(total) + " bytes used");
  if (w->arena) w->owned_bytes = w->arena->bytes();  // with its rounding: what the cache holds (0: borrowed)
  w->derive_seconds = seconds_since(t0);
  return w;
}

std::shared_ptr<const Weights> Engine::weights(const std::string& name) {
  std::optional<mx::Format> f;
  if (name != "fp32") f = resolve(name);
  const std::string key = f ? f->name : "fp32";
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
    w = build(f);
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
  const std::string key = name == "fp32" ? name : resolve(name).name;
  std::lock_guard<std::mutex> lk(mu_);
  cache_.erase(key);
  lru_.remove(key);
}

// ---- KV buffers ----

namespace {
constexpr std::size_t kHuge = std::size_t{2} << 20;
std::size_t kv_floats(const model::LmConfig& c) { return static_cast<std::size_t>(2 * c.n_layers * c.max_seq * c.dim); }
}  // namespace

HugeBuffer::HugeBuffer(std::size_t bytes) {
  // Huge pages from 8 MiB up; a small model's buffers stay in 4 KiB pages (one 2 MiB page would
  // be zeroed on first touch for a cache of a few KiB).
  huge_ = bytes >= 4 * kHuge;
  const std::size_t align = huge_ ? kHuge : 64;
  bytes_ = (std::max<std::size_t>(bytes, 1) + align - 1) / align * align;
  p_ = std::aligned_alloc(align, bytes_);
  if (!p_) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  if (huge_) madvise(p_, bytes_, MADV_HUGEPAGE);  // advice only: without THP the pages stay 4 KiB
#endif
}

HugeBuffer::~HugeBuffer() { std::free(p_); }

std::unique_ptr<KvBuffer> Engine::take_kv() const {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!idle_kv_.empty()) {
      auto b = std::move(idle_kv_.back());
      idle_kv_.pop_back();
      return b;
    }
  }
  return std::make_unique<KvBuffer>(kv_floats(cfg_));
}

void Engine::give_kv(std::unique_ptr<KvBuffer> b) const noexcept {
  if (!b) return;
  std::lock_guard<std::mutex> lk(mu_);
  if (idle_kv_.size() < idle_kv_limit_) idle_kv_.push_back(std::move(b));  // else freed here
}

void Engine::set_idle_kv_limit(std::size_t n) {
  std::lock_guard<std::mutex> lk(mu_);
  idle_kv_limit_ = n;
  if (idle_kv_.size() > n) idle_kv_.resize(n);
}

std::uint64_t Engine::idle_kv_bytes() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::uint64_t n = 0;
  for (const auto& b : idle_kv_) n += b->bytes();
  return n;
}

// ---- Session ----

Session::Session(const Engine& e, std::shared_ptr<const Weights> w) : e_(e), w_(std::move(w)), kv_(e.take_kv()) {
  k_ = kv_->data();
  v_ = k_ + kv_->floats() / 2;
}

Session::~Session() { e_.give_kv(std::move(kv_)); }

std::vector<float> Session::feed(const std::vector<int>& tokens) {
  std::vector<float> out;
  forward(tokens, false, &out);
  return out;
}

std::vector<float> Session::feed_all(const std::vector<int>& tokens) {
  std::vector<float> out;
  forward(tokens, true, &out);
  return out;
}

void Session::forward(const std::vector<int>& tokens, bool all_logits, std::vector<float>* out) {
  const auto& c = e_.config();
  const std::int64_t T = static_cast<std::int64_t>(tokens.size()), D = c.dim, H = c.n_heads, hd = c.head_dim(), half = hd / 2;
  const std::int64_t F = c.hidden();
  if (T == 0) throw std::invalid_argument("no tokens to feed");
  if (pos_ + T > c.max_seq) {
    throw std::invalid_argument("sequence of " + std::to_string(pos_ + T) + " tokens exceeds max_seq " + std::to_string(c.max_seq));
  }
  for (int t : tokens) {
    if (t < 0 || t >= c.vocab) throw std::invalid_argument("token " + std::to_string(t) + " is out of the vocabulary");
  }
  std::vector<float> x(static_cast<std::size_t>(T * D)), h(x.size()), q(x.size()), k(x.size()), v(x.size()), o(x.size()), tmp(x.size());
  std::vector<float> a(static_cast<std::size_t>(T * F)), b(a.size());
  for (std::int64_t t = 0; t < T; ++t) std::copy_n(e_.embedding().data() + tokens[t] * D, D, x.data() + t * D);
  const float inv_sqrt = 1.0f / std::sqrt(static_cast<float>(hd));
  // The cache is [layer, head, position, head_dim]: a head's keys (values) are contiguous, so
  // attention streams them instead of taking head_dim floats every dim floats.
  auto kv_at = [&](std::int64_t l, std::int64_t hh, std::int64_t s) { return ((l * H + hh) * c.max_seq + s) * hd; };
  const KernelOptions& kern = e_.kernels();
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w_->layers[static_cast<std::size_t>(l)];
    for (std::int64_t t = 0; t < T; ++t) rmsnorm(x.data() + t * D, e_.attn_norm(l).data(), D, c.norm_eps, h.data() + t * D);
    Linear::forward_shared({{&L.wq, q.data()}, {&L.wk, k.data()}, {&L.wv, v.data()}}, h.data(), T, kern, e_.shared_decode());
    for (std::int64_t t = 0; t < T; ++t) {
      const std::int64_t pos = pos_ + t;
      const float* cs = e_.rope_cos().data() + pos * half;
      const float* sn = e_.rope_sin().data() + pos * half;
      for (float* vec : {q.data() + t * D, k.data() + t * D}) {
        for (std::int64_t hh = 0; hh < H; ++hh) {
          float* p = vec + hh * hd;
          for (std::int64_t i = 0; i < half; ++i) {
            const float x1 = p[i], x2 = p[i + half];
            p[i] = x1 * cs[i] - x2 * sn[i];
            p[i + half] = x1 * sn[i] + x2 * cs[i];
          }
        }
      }
      for (std::int64_t hh = 0; hh < H; ++hh) {
        std::copy_n(k.data() + t * D + hh * hd, hd, k_ + kv_at(l, hh, pos));
        std::copy_n(v.data() + t * D + hh * hd, hd, v_ + kv_at(l, hh, pos));
      }
    }
    // causal attention against the cache, the heads shared among the threads (each head by
    // one thread in a fixed order: the result does not depend on the thread count)
    parallel_for(H, 1, [&](std::int64_t h0, std::int64_t h1) {
      std::vector<float> att(static_cast<std::size_t>(pos_ + T));
      for (std::int64_t t = 0; t < T; ++t) {
        const std::int64_t n = pos_ + t + 1;
        for (std::int64_t hh = h0; hh < h1; ++hh) {
          const float* qh = q.data() + t * D + hh * hd;
          float mx_ = -INFINITY;
          for (std::int64_t s = 0; s < n; ++s) {
            att[s] = dot(qh, k_ + kv_at(l, hh, s), hd) * inv_sqrt;
            mx_ = std::max(mx_, att[s]);
          }
          float sum = 0;
          for (std::int64_t s = 0; s < n; ++s) {
            att[s] = std::exp(att[s] - mx_);
            sum += att[s];
          }
          float* oh = o.data() + t * D + hh * hd;
          std::fill_n(oh, hd, 0.0f);
          for (std::int64_t s = 0; s < n; ++s) axpy(att[s] / sum, v_ + kv_at(l, hh, s), oh, hd);
        }
      }
    });
    L.wo.forward(o.data(), T, tmp.data(), kern);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
    for (std::int64_t t = 0; t < T; ++t) rmsnorm(x.data() + t * D, e_.mlp_norm(l).data(), D, c.norm_eps, h.data() + t * D);
    Linear::forward_shared({{&L.w1, a.data()}, {&L.w3, b.data()}}, h.data(), T, kern, e_.shared_decode());
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = silu(a[i]) * b[i];
    L.w2.forward(a.data(), T, tmp.data(), kern);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
  }
  const std::int64_t first = all_logits ? 0 : T - 1, m = T - first;
  for (std::int64_t t = first; t < T; ++t) rmsnorm(x.data() + t * D, e_.final_norm().data(), D, c.norm_eps, h.data() + (t - first) * D);
  out->assign(static_cast<std::size_t>(m * c.vocab), 0.0f);
  w_->head.forward(h.data(), m, out->data(), kern);
  pos_ += T;
}

// ---- sampling, generation, perplexity ----

int Sampler::sample(const std::vector<float>& logits) {
  const int V = static_cast<int>(logits.size());
  if (o_.temperature <= 0) return static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  std::vector<int> idx(static_cast<std::size_t>(V));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  std::size_t keep = idx.size();
  if (o_.top_k > 0) keep = std::min<std::size_t>(keep, static_cast<std::size_t>(o_.top_k));
  std::vector<double> p(keep);
  const double mx_ = logits[idx[0]];
  double sum = 0;
  for (std::size_t i = 0; i < keep; ++i) sum += p[i] = std::exp((logits[idx[i]] - mx_) / o_.temperature);
  if (o_.top_p < 1.0) {
    double cum = 0;
    std::size_t n = 0;
    while (n < keep && cum < o_.top_p * sum) cum += p[n++];
    keep = std::max<std::size_t>(1, n);
    sum = cum;
  }
  const double u = std::uniform_real_distribution<double>(0.0, sum)(rng_);
  double cum = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    cum += p[i];
    if (u < cum) return idx[i];
  }
  return idx[keep - 1];
}

Generation generate(const Engine& e, std::shared_ptr<const Weights> w, const std::string& prompt, std::int64_t n, const SamplingOptions& s) {
  Session sess(e, std::move(w));
  Sampler sampler(s);
  Generation g;
  std::vector<int> toks;
  for (unsigned char ch : prompt.empty() ? std::string("\n") : prompt) toks.push_back(ch);
  if (static_cast<std::int64_t>(toks.size()) > e.config().max_seq) {
    throw std::invalid_argument("prompt of " + std::to_string(toks.size()) + " bytes exceeds max_seq " + std::to_string(e.config().max_seq));
  }
  g.prompt_tokens = static_cast<std::int64_t>(toks.size());
  auto t0 = std::chrono::steady_clock::now();
  std::vector<float> logits = sess.feed(toks);
  g.prefill_seconds = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  for (std::int64_t i = 0; i < n; ++i) {
    const int tok = sampler.sample(logits);
    g.text.push_back(static_cast<char>(tok));
    ++g.new_tokens;
    if (sess.position() >= e.config().max_seq) break;
    logits = sess.feed({tok});
  }
  g.decode_seconds = seconds_since(t0);
  return g;
}

Perplexity perplexity(const Engine& e, const std::shared_ptr<const Weights>& w, const std::vector<std::uint8_t>& text, std::int64_t seq,
                      std::int64_t max_windows) {
  const std::int64_t len = std::min<std::int64_t>(seq + 1, static_cast<std::int64_t>(text.size()));
  if (len < 2) throw std::invalid_argument("text too short for perplexity");
  const std::int64_t span = static_cast<std::int64_t>(text.size()) - len, V = e.config().vocab;
  const std::int64_t all = span / (len - 1) + 1;
  const bool spread = max_windows > 0 && max_windows < all;
  const std::int64_t n = spread ? max_windows : all;
  double sum = 0;
  std::int64_t bytes = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t s0 = !spread ? i * (len - 1) : n == 1 ? 0 : i * span / (n - 1);
    Session sess(e, w);
    std::vector<int> toks(text.begin() + s0, text.begin() + s0 + len - 1);
    const std::vector<float> lg = sess.feed_all(toks);
    for (std::int64_t t = 0; t < len - 1; ++t) {
      const float* r = lg.data() + t * V;
      const float m = *std::max_element(r, r + V);
      double z = 0;
      for (std::int64_t i = 0; i < V; ++i) z += std::exp(static_cast<double>(r[i] - m));
      sum += std::log(z) + m - r[text[s0 + t + 1]];
      ++bytes;
    }
  }
  return {sum / static_cast<double>(bytes), bytes};
}

}  // namespace mfqat::runtime
