// The forward pass of the LM on one sequence: embedding, per layer RMSNorm, Q/K/V (+ Qwen2's
// biases, Qwen3's per-head q/k norms) with rotary positions into the KV cache, causal
// grouped-query attention over the cache, the SwiGLU MLP, then the final norm and the head. Prefill (several tokens) and decode (one) run the same code; the
// linears run on the fused MX kernels (linear.cpp).
#include "mfqat/runtime/session.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/engine.h"

namespace mfqat::runtime {

namespace {

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

}  // namespace

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
  const std::int64_t T = static_cast<std::int64_t>(tokens.size()), D = c.dim, H = c.n_heads, KV = c.kv_heads(), hd = c.head_dim(), half = hd / 2;
  const std::int64_t F = c.hidden(), QD = c.q_dim(), KD = c.kv_dim(), group = H / KV;
  if (T == 0) throw std::invalid_argument("no tokens to feed");
  if (pos_ + T > c.max_seq) {
    throw std::invalid_argument("sequence of " + std::to_string(pos_ + T) + " tokens exceeds the context of " + std::to_string(c.max_seq));
  }
  for (int t : tokens) {
    if (t < 0 || t >= c.vocab) throw std::invalid_argument("token " + std::to_string(t) + " is out of the vocabulary");
  }
  std::vector<float> x(static_cast<std::size_t>(T * D)), h(x.size()), q(static_cast<std::size_t>(T * QD)), k(static_cast<std::size_t>(T * KD)),
      v(k.size()), o(q.size()), tmp(x.size());
  std::vector<float> a(static_cast<std::size_t>(T * F)), b(a.size());
  for (std::int64_t t = 0; t < T; ++t) std::copy_n(e_.embedding().data() + tokens[t] * D, D, x.data() + t * D);
  const float inv_sqrt = 1.0f / std::sqrt(static_cast<float>(hd));
  // The cache is [layer, kv head, position, head_dim]: a head's keys (values) are contiguous, so
  // attention streams them instead of taking head_dim floats every kv_dim floats.
  auto kv_at = [&](std::int64_t l, std::int64_t hh, std::int64_t s) { return ((l * KV + hh) * c.max_seq + s) * hd; };
  const KernelOptions& kern = e_.kernels();
  std::vector<float> normed(static_cast<std::size_t>(hd));
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w_->layers[static_cast<std::size_t>(l)];
    for (std::int64_t t = 0; t < T; ++t) rmsnorm(x.data() + t * D, e_.attn_norm(l).data(), D, c.norm_eps, h.data() + t * D);
    Linear::forward_shared({{&L.wq, q.data()}, {&L.wk, k.data()}, {&L.wv, v.data()}}, h.data(), T, kern, e_.shared_decode());
    if (const Engine::QkvBias* bias = e_.qkv_bias(l)) {  // Qwen2
      for (std::int64_t t = 0; t < T; ++t) {
        for (std::int64_t i = 0; i < QD; ++i) q[t * QD + i] += bias->q[i];
        for (std::int64_t i = 0; i < KD; ++i) {
          k[t * KD + i] += bias->k[i];
          v[t * KD + i] += bias->v[i];
        }
      }
    }
    const Engine::QkNorm* qkn = e_.qk_norm(l);  // Qwen3: RMSNorm over each head, before the rotation
    for (std::int64_t t = 0; t < T; ++t) {
      const std::int64_t pos = pos_ + t;
      const float* cs = e_.rope_cos().data() + pos * half;
      const float* sn = e_.rope_sin().data() + pos * half;
      // q's heads, then k's (Qwen3: each normed first)
      auto rotate = [&](float* vec, std::int64_t heads, const float* nw) {
        for (std::int64_t hh = 0; hh < heads; ++hh) {
          float* p = vec + hh * hd;
          if (nw) {
            rmsnorm(p, nw, hd, c.norm_eps, normed.data());
            std::copy(normed.begin(), normed.end(), p);
          }
          for (std::int64_t i = 0; i < half; ++i) {
            const float x1 = p[i], x2 = p[i + half];
            p[i] = x1 * cs[i] - x2 * sn[i];
            p[i + half] = x1 * sn[i] + x2 * cs[i];
          }
        }
      };
      rotate(q.data() + t * QD, H, qkn ? qkn->q.data() : nullptr);
      rotate(k.data() + t * KD, KV, qkn ? qkn->k.data() : nullptr);
      for (std::int64_t hh = 0; hh < KV; ++hh) {
        std::copy_n(k.data() + t * KD + hh * hd, hd, k_ + kv_at(l, hh, pos));
        std::copy_n(v.data() + t * KD + hh * hd, hd, v_ + kv_at(l, hh, pos));
      }
    }
    // causal attention against the cache, the query heads shared among the threads (each head by
    // one thread in a fixed order: the result does not depend on the thread count); query head
    // hh reads kv head hh / group (grouped-query attention)
    parallel_for(H, 1, [&](std::int64_t h0, std::int64_t h1) {
      std::vector<float> att(static_cast<std::size_t>(pos_ + T));
      for (std::int64_t t = 0; t < T; ++t) {
        const std::int64_t n = pos_ + t + 1;
        for (std::int64_t hh = h0; hh < h1; ++hh) {
          const std::int64_t kh = hh / group;
          const float* qh = q.data() + t * QD + hh * hd;
          float mx_ = -INFINITY;
          for (std::int64_t s = 0; s < n; ++s) {
            att[s] = dot(qh, k_ + kv_at(l, kh, s), hd) * inv_sqrt;
            mx_ = std::max(mx_, att[s]);
          }
          float sum = 0;
          for (std::int64_t s = 0; s < n; ++s) {
            att[s] = std::exp(att[s] - mx_);
            sum += att[s];
          }
          float* oh = o.data() + t * QD + hh * hd;
          std::fill_n(oh, hd, 0.0f);
          for (std::int64_t s = 0; s < n; ++s) axpy(att[s] / sum, v_ + kv_at(l, kh, s), oh, hd);
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

}  // namespace mfqat::runtime
