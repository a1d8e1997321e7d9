// The forward pass of the LM on one sequence: embedding, per layer RMSNorm, Q/K/V (+ Qwen2's
// biases, Qwen3's per-head q/k norms) with rotary positions into the KV cache, causal
// grouped-query attention over the cache, the SwiGLU MLP, then the final norm and the head. Prefill (several tokens) and decode (one) run the same code; the
// linears run on the fused MX kernels (linear.cpp).
#include "mfqat/runtime/session.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/engine.h"

namespace mfqat::runtime {

namespace {

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

// exp(x) without a libm call, so that the loops below vectorize: Cephes expf's reduction
// x = n ln2 + r (ln2 in two parts) and its degree-7 polynomial on |r| <= ln2 / 2 (about 1 ulp),
// times 2^n as two normal powers of two. x > 88.72: +inf; x < -104: 0 (as expf); NaN: NaN.
inline float exp_poly(float x) {
  const float xc = x == x ? std::min(std::max(x, -104.0f), 88.72f) : 0.0f;
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // nearest integer
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int ni = static_cast<int>(n), n1 = ni / 2, n2 = ni - n1;  // n in [-150, 128]
  const float res = p * std::bit_cast<float>(static_cast<std::uint32_t>(n1 + 127) << 23) * std::bit_cast<float>(static_cast<std::uint32_t>(n2 + 127) << 23);
  return x != x ? x : x > 88.72f ? INFINITY : res;
}

// s[i] = exp(s[i] - m); returns their sum, added in order.
MFQAT_CLONES float exp_shifted(float* s, std::int64_t n, float m) {
  for (std::int64_t i = 0; i < n; ++i) s[i] = exp_poly(s[i] - m);
  float sum = 0;
  for (std::int64_t i = 0; i < n; ++i) sum += s[i];
  return sum;
}

// a[i] = silu(a[i]) * b[i], silu(x) = x / (1 + exp(-x)).
MFQAT_CLONES void silu_mul(float* a, const float* b, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) a[i] = a[i] / (1.0f + exp_poly(-a[i])) * b[i];
}

// fn(t) for every token row t < T, rows shared among the threads (each row by one thread: the
// same result for any thread count); `width` floats per row sizes the parts.
template <class Fn>
void rows_parallel(std::int64_t T, std::int64_t width, Fn&& fn) {
  parallel_for(T, std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(1, width)), [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) fn(t);
  });
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
  const std::int64_t T = static_cast<std::int64_t>(tokens.size());
  if (T == 0) throw std::invalid_argument("no tokens to feed");
  if (pos_ + T > c.max_seq) {
    throw std::invalid_argument("sequence of " + std::to_string(pos_ + T) + " tokens exceeds the context of " + std::to_string(c.max_seq));
  }
  for (int t : tokens) {
    if (t < 0 || t >= c.vocab) throw std::invalid_argument("token " + std::to_string(t) + " is out of the vocabulary");
  }
  // Chunks of at most ubatch tokens, one after another: the buffers below hold one chunk. Every
  // row of every product and every query's attention is computed on its own, so the chunking
  // does not change a bit of the result (tested).
  const std::int64_t ub = std::max<std::int64_t>(1, e_.kernels().ubatch);
  if (T <= ub) {
    run_chunk(tokens.data(), T, all_logits ? Logits::All : Logits::Last, out);
    return;
  }
  out->clear();
  std::vector<float> part;
  for (std::int64_t i = 0; i < T; i += ub) {
    const std::int64_t n = std::min(ub, T - i);
    const bool last = i + n == T;
    run_chunk(tokens.data() + i, n, all_logits ? Logits::All : last ? Logits::Last : Logits::None, &part);
    if (all_logits) {
      out->insert(out->end(), part.begin(), part.end());
    } else if (last) {
      out->swap(part);
    }
  }
}

void Session::run_chunk(const int* tokens, std::int64_t T, Logits logits, std::vector<float>* out) {
  const auto& c = e_.config();
  const std::int64_t D = c.dim, H = c.n_heads, KV = c.kv_heads(), hd = c.head_dim(), half = hd / 2;
  const std::int64_t F = c.hidden(), QD = c.q_dim(), KD = c.kv_dim(), group = H / KV;
  std::vector<float> x(static_cast<std::size_t>(T * D)), h(x.size()), q(static_cast<std::size_t>(T * QD)), k(static_cast<std::size_t>(T * KD)),
      v(k.size()), o(q.size()), tmp(x.size());
  std::vector<float> a(static_cast<std::size_t>(T * F)), b(a.size());
  for (std::int64_t t = 0; t < T; ++t) std::copy_n(e_.embedding().data() + tokens[t] * D, D, x.data() + t * D);
  const float inv_sqrt = 1.0f / std::sqrt(static_cast<float>(hd));
  // The cache is [layer, kv head, position, head_dim]: a head's keys (values) are contiguous, so
  // attention streams them instead of taking head_dim floats every kv_dim floats.
  auto kv_at = [&](std::int64_t l, std::int64_t hh, std::int64_t s) { return ((l * KV + hh) * c.max_seq + s) * hd; };
  const KernelOptions& kern = e_.kernels();
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w_->layers[static_cast<std::size_t>(l)];
    rows_parallel(T, D, [&](std::int64_t t) { rmsnorm(x.data() + t * D, e_.attn_norm(l).data(), D, c.norm_eps, h.data() + t * D); });
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
    rows_parallel(T, QD + KD, [&](std::int64_t t) {
      std::vector<float> normed(qkn ? static_cast<std::size_t>(hd) : 0);  // Qwen3's per-head norm only
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
    });
    // Causal attention against the cache in tiles: a task is one query head and up to kTileQ
    // consecutive tokens of the chunk, and it walks the cache in tiles of kTileK keys, so each
    // K/V tile is read once for all the task's tokens (not once per token), with a running
    // softmax (max m, sum l, output O rescaled when m grows) and no score matrix. Query head hh
    // reads kv head hh / group (grouped-query attention). A token's result depends only on its
    // own keys, taken in tiles at fixed positions (multiples of kTileK) in order, so it is the
    // same for any chunking, tile of tokens and thread count (the decode step runs this code too).
    constexpr std::int64_t kTileQ = 32, kTileK = 64;
    const std::int64_t qtiles = (T + kTileQ - 1) / kTileQ;
    parallel_for(H * qtiles, 1, [&](std::int64_t i0, std::int64_t i1) {
      std::vector<float> s(kTileK), O(static_cast<std::size_t>(kTileQ * hd)), m(kTileQ), lsum(kTileQ);
      for (std::int64_t task = i0; task < i1; ++task) {
        const std::int64_t hh = task / qtiles, t0 = task % qtiles * kTileQ, t1 = std::min(T, t0 + kTileQ), kh = hh / group;
        std::fill(O.begin(), O.end(), 0.0f);
        std::fill(m.begin(), m.end(), -INFINITY);
        std::fill(lsum.begin(), lsum.end(), 0.0f);
        for (std::int64_t k0 = 0; k0 < pos_ + t1; k0 += kTileK) {
          for (std::int64_t t = t0; t < t1; ++t) {
            const std::int64_t nk = std::min(kTileK, pos_ + t + 1 - k0);  // this token's keys in the tile
            if (nk <= 0) continue;
            const float* qh = q.data() + t * QD + hh * hd;
            float tmax = -INFINITY;
            for (std::int64_t j = 0; j < nk; ++j) {
              s[j] = dot(qh, k_ + kv_at(l, kh, k0 + j), hd) * inv_sqrt;
              tmax = std::max(tmax, s[j]);
            }
            float* Ot = O.data() + (t - t0) * hd;
            float& mt = m[t - t0];
            if (tmax > mt) {  // rescale what the earlier tiles gave (nothing for the first)
              const float c = exp_poly(mt - tmax);
              lsum[t - t0] *= c;
              for (std::int64_t d = 0; d < hd; ++d) Ot[d] *= c;
              mt = tmax;
            }
            lsum[t - t0] += exp_shifted(s.data(), nk, mt);
            for (std::int64_t j = 0; j < nk; ++j) axpy(s[j], v_ + kv_at(l, kh, k0 + j), Ot, hd);
          }
        }
        for (std::int64_t t = t0; t < t1; ++t) {
          float* oh = o.data() + t * QD + hh * hd;
          const float inv = 1.0f / lsum[t - t0];
          for (std::int64_t d = 0; d < hd; ++d) oh[d] = O[(t - t0) * hd + d] * inv;
        }
      }
    });
    L.wo.forward(o.data(), T, tmp.data(), kern);
    rows_parallel(T, D, [&](std::int64_t t) {
      for (std::int64_t i = t * D; i < (t + 1) * D; ++i) x[i] += tmp[i];
      rmsnorm(x.data() + t * D, e_.mlp_norm(l).data(), D, c.norm_eps, h.data() + t * D);
    });
    Linear::forward_shared({{&L.w1, a.data()}, {&L.w3, b.data()}}, h.data(), T, kern, e_.shared_decode());
    rows_parallel(T, F, [&](std::int64_t t) { silu_mul(a.data() + t * F, b.data() + t * F, F); });
    L.w2.forward(a.data(), T, tmp.data(), kern);
    rows_parallel(T, D, [&](std::int64_t t) {
      for (std::int64_t i = t * D; i < (t + 1) * D; ++i) x[i] += tmp[i];
    });
  }
  if (logits == Logits::None) {
    pos_ += T;
    return;
  }
  const std::int64_t first = logits == Logits::All ? 0 : T - 1, m = T - first;
  for (std::int64_t t = first; t < T; ++t) rmsnorm(x.data() + t * D, e_.final_norm().data(), D, c.norm_eps, h.data() + (t - first) * D);
  out->assign(static_cast<std::size_t>(m * c.vocab), 0.0f);
  w_->head.forward(h.data(), m, out->data(), kern);
  pos_ += T;
}

}  // namespace mfqat::runtime
