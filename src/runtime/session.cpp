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

Session::Session(const Engine& e, std::shared_ptr<const Weights> w, std::int64_t capacity)
    : e_(e), w_(std::move(w)), cap_(capacity > 0 ? capacity : e.config().max_seq) {
  if (cap_ > e.config().max_seq) {
    throw std::invalid_argument("a session of " + std::to_string(cap_) + " positions exceeds the context of " + std::to_string(e.config().max_seq));
  }
}

Session::~Session() {
  for (auto& p : pages_) e_.kv_pool().give(std::move(p));
}

void Session::hold(std::int64_t positions) {
  while (static_cast<std::int64_t>(pages_.size()) * kKvPageTokens < positions) {
    pages_.push_back(e_.kv_pool().take());
  }
}

void Session::set_weights(std::shared_ptr<const Weights> w) {
  if (!w) throw std::invalid_argument("set_weights: no weights");
  w_ = std::move(w);
}

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

void Session::check(const int* tokens, std::int64_t n) const {
  const auto& c = e_.config();
  if (n <= 0) throw std::invalid_argument("no tokens to feed");
  if (pos_ + n > cap_) {
    throw std::invalid_argument("sequence of " + std::to_string(pos_ + n) + " tokens exceeds the context of " + std::to_string(cap_));
  }
  for (std::int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= c.vocab) throw std::invalid_argument("token " + std::to_string(tokens[i]) + " is out of the vocabulary");
  }
}

void Session::forward(const std::vector<int>& tokens, bool all_logits, std::vector<float>* out) {
  const std::int64_t T = static_cast<std::int64_t>(tokens.size());
  check(tokens.data(), T);
  // Chunks of at most ubatch tokens, one after another: the buffers of run() hold one chunk.
  // Every row of every product and every query's attention is computed on its own, so the
  // chunking does not change a bit of the result (tested).
  const std::int64_t ub = std::max<std::int64_t>(1, e_.kernels().ubatch);
  out->clear();
  std::vector<std::vector<float>> part(1);
  for (std::int64_t i = 0; i < T; i += ub) {
    const std::int64_t n = std::min(ub, T - i);
    const bool last = i + n == T;
    run({{this, tokens.data() + i, n, all_logits ? Logits::All : last ? Logits::Last : Logits::None}}, &part);
    if (all_logits) {
      out->insert(out->end(), part[0].begin(), part[0].end());
    } else if (last) {
      out->swap(part[0]);
    }
  }
}

void Session::step(const std::vector<Piece>& pieces, std::vector<std::vector<float>>* out) {
  if (pieces.empty()) throw std::invalid_argument("a step needs at least one piece");
  const Session* first = pieces[0].session;
  if (!first) throw std::invalid_argument("a step's piece has no session");
  std::int64_t rows = 0;
  std::vector<Segment> segs;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = pieces[i];
    if (!p.session) throw std::invalid_argument("a step's piece has no session");
    if (&p.session->e_ != &first->e_ || p.session->w_ != first->w_) {
      throw std::invalid_argument("a step's sessions must share one engine and one format");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (pieces[j].session == p.session) throw std::invalid_argument("a session appears twice in one step");
    }
    p.session->check(p.tokens, p.n);
    rows += p.n;
    segs.push_back({p.session, p.tokens, p.n, p.logits ? Logits::Last : Logits::None});
  }
  if (rows > std::max<std::int64_t>(1, first->e_.kernels().ubatch)) {
    throw std::invalid_argument("a step of " + std::to_string(rows) + " tokens exceeds ubatch " + std::to_string(first->e_.kernels().ubatch));
  }
  run(segs, out);
}

void Session::run(const std::vector<Segment>& segs, std::vector<std::vector<float>>* out) {
  const Engine& e = segs[0].s->e_;
  const Weights& W = *segs[0].s->w_;
  const auto& c = e.config();
  const std::int64_t D = c.dim, H = c.n_heads, KV = c.kv_heads(), hd = c.head_dim(), half = hd / 2;
  const std::int64_t F = c.hidden(), QD = c.q_dim(), KD = c.kv_dim(), group = H / KV;
  // Row r of the batch: its segment and its position in that segment's sequence.
  const std::int64_t S = static_cast<std::int64_t>(segs.size());
  std::vector<std::int64_t> seg_start(static_cast<std::size_t>(S + 1), 0);
  for (std::int64_t i = 0; i < S; ++i) seg_start[static_cast<std::size_t>(i + 1)] = seg_start[static_cast<std::size_t>(i)] + segs[static_cast<std::size_t>(i)].n;
  const std::int64_t T = seg_start.back();
  std::vector<std::int64_t> row_seg(static_cast<std::size_t>(T)), row_pos(static_cast<std::size_t>(T));
  for (std::int64_t i = 0; i < S; ++i) {
    for (std::int64_t r = seg_start[static_cast<std::size_t>(i)]; r < seg_start[static_cast<std::size_t>(i + 1)]; ++r) {
      row_seg[static_cast<std::size_t>(r)] = i;
      row_pos[static_cast<std::size_t>(r)] = segs[static_cast<std::size_t>(i)].s->pos_ + r - seg_start[static_cast<std::size_t>(i)];
    }
  }
  std::vector<float> x(static_cast<std::size_t>(T * D)), h(x.size()), q(static_cast<std::size_t>(T * QD)), k(static_cast<std::size_t>(T * KD)),
      v(k.size()), o(q.size()), tmp(x.size());
  std::vector<float> a(static_cast<std::size_t>(T * F)), b(a.size());
  for (std::int64_t i = 0; i < S; ++i) {
    const Segment& sg = segs[static_cast<std::size_t>(i)];
    for (std::int64_t t = 0; t < sg.n; ++t) {
      std::copy_n(e.embedding().data() + sg.tokens[t] * D, D, x.data() + (seg_start[static_cast<std::size_t>(i)] + t) * D);
    }
  }
  const float inv_sqrt = 1.0f / std::sqrt(static_cast<float>(hd));
  // A cache page is [layer, kv head, position in page, head_dim], keys then values: within a
  // page a head's keys (values) are contiguous, so attention streams them instead of taking
  // head_dim floats every kv_dim floats.
  constexpr std::int64_t P = kKvPageTokens;
  const std::size_t vofs = e.kv_pool().page_floats() / 2;
  auto key_at = [&](const Session* s, std::int64_t l, std::int64_t hh, std::int64_t p) {
    return s->pages_[static_cast<std::size_t>(p / P)]->as<float>() + ((l * KV + hh) * P + p % P) * hd;
  };
  for (const Segment& sg : segs) sg.s->hold(sg.s->pos_ + sg.n);  // before anything changes (may throw)
  // Attention tasks: one query head and up to kTileQ consecutive rows of one segment. A key tile
  // starts at a multiple of kTileK, so it lies in one page.
  constexpr std::int64_t kTileQ = 32, kTileK = 64;
  static_assert(kKvPageTokens % kTileK == 0, "a key tile must not straddle two KV pages");
  std::vector<std::int64_t> tile_r0;  // the first row of each tile; a tile ends at kTileQ rows or its segment's end
  for (std::int64_t i = 0; i < S; ++i) {
    for (std::int64_t r = seg_start[static_cast<std::size_t>(i)]; r < seg_start[static_cast<std::size_t>(i + 1)]; r += kTileQ) tile_r0.push_back(r);
  }
  const std::int64_t tiles = static_cast<std::int64_t>(tile_r0.size());
  const KernelOptions& kern = e.kernels();
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = W.layers[static_cast<std::size_t>(l)];
    rows_parallel(T, D, [&](std::int64_t t) { rmsnorm(x.data() + t * D, e.attn_norm(l).data(), D, c.norm_eps, h.data() + t * D); });
    Linear::forward_shared({{&L.wq, q.data()}, {&L.wk, k.data()}, {&L.wv, v.data()}}, h.data(), T, kern, e.shared_decode());
    if (const Engine::QkvBias* bias = e.qkv_bias(l)) {  // Qwen2
      for (std::int64_t t = 0; t < T; ++t) {
        for (std::int64_t i = 0; i < QD; ++i) q[t * QD + i] += bias->q[i];
        for (std::int64_t i = 0; i < KD; ++i) {
          k[t * KD + i] += bias->k[i];
          v[t * KD + i] += bias->v[i];
        }
      }
    }
    const Engine::QkNorm* qkn = e.qk_norm(l);  // Qwen3: RMSNorm over each head, before the rotation
    rows_parallel(T, QD + KD, [&](std::int64_t t) {
      std::vector<float> normed(qkn ? static_cast<std::size_t>(hd) : 0);  // Qwen3's per-head norm only
      const std::int64_t pos = row_pos[static_cast<std::size_t>(t)];
      Session* s = segs[static_cast<std::size_t>(row_seg[static_cast<std::size_t>(t)])].s;
      const float* cs = e.rope_cos().data() + pos * half;
      const float* sn = e.rope_sin().data() + pos * half;
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
        float* kp = key_at(s, l, hh, pos);
        std::copy_n(k.data() + t * KD + hh * hd, hd, kp);
        std::copy_n(v.data() + t * KD + hh * hd, hd, kp + vofs);
      }
    });
    // Causal attention against each segment's cache in tiles: a task is one query head and up to
    // kTileQ consecutive rows of one segment, and it walks that session's cache in tiles of
    // kTileK keys, so each K/V tile is read once for all the task's rows (not once per row), with
    // a running softmax (max m, sum l, output O rescaled when m grows) and no score matrix.
    // Query head hh reads kv head hh / group (grouped-query attention). A row's result depends
    // only on its own keys, taken in tiles at fixed positions (multiples of kTileK) in order, so
    // it is the same for any chunking, batch, tile of rows and thread count (the decode step
    // runs this code too).
    parallel_for(H * tiles, 1, [&](std::int64_t i0, std::int64_t i1) {
      std::vector<float> sc(kTileK), O(static_cast<std::size_t>(kTileQ * hd)), m(kTileQ), lsum(kTileQ);
      for (std::int64_t task = i0; task < i1; ++task) {
        const std::int64_t hh = task / tiles, r0 = tile_r0[static_cast<std::size_t>(task % tiles)], kh = hh / group;
        const std::int64_t si = row_seg[static_cast<std::size_t>(r0)];
        const Session* s = segs[static_cast<std::size_t>(si)].s;
        const std::int64_t r1 = std::min(seg_start[static_cast<std::size_t>(si + 1)], r0 + kTileQ);
        const std::int64_t p0 = row_pos[static_cast<std::size_t>(r0)], p1 = p0 + (r1 - r0);  // positions [p0, p1)
        std::fill(O.begin(), O.end(), 0.0f);
        std::fill(m.begin(), m.end(), -INFINITY);
        std::fill(lsum.begin(), lsum.end(), 0.0f);
        for (std::int64_t k0 = 0; k0 < p1; k0 += kTileK) {
          const float* kt = key_at(s, l, kh, k0);  // the tile's keys, hd floats apart; values at + vofs
          const float* vt = kt + vofs;
          for (std::int64_t t = r0; t < r1; ++t) {
            const std::int64_t nk = std::min(kTileK, p0 + (t - r0) + 1 - k0);  // this row's keys in the tile
            if (nk <= 0) continue;
            const float* qh = q.data() + t * QD + hh * hd;
            float tmax = -INFINITY;
            for (std::int64_t j = 0; j < nk; ++j) {
              sc[static_cast<std::size_t>(j)] = dot(qh, kt + j * hd, hd) * inv_sqrt;
              tmax = std::max(tmax, sc[static_cast<std::size_t>(j)]);
            }
            float* Ot = O.data() + (t - r0) * hd;
            float& mt = m[static_cast<std::size_t>(t - r0)];
            if (tmax > mt) {  // rescale what the earlier tiles gave (nothing for the first)
              const float cf = exp_poly(mt - tmax);
              lsum[static_cast<std::size_t>(t - r0)] *= cf;
              for (std::int64_t d = 0; d < hd; ++d) Ot[d] *= cf;
              mt = tmax;
            }
            lsum[static_cast<std::size_t>(t - r0)] += exp_shifted(sc.data(), nk, mt);
            for (std::int64_t j = 0; j < nk; ++j) axpy(sc[static_cast<std::size_t>(j)], vt + j * hd, Ot, hd);
          }
        }
        for (std::int64_t t = r0; t < r1; ++t) {
          float* oh = o.data() + t * QD + hh * hd;
          const float inv = 1.0f / lsum[static_cast<std::size_t>(t - r0)];
          for (std::int64_t d = 0; d < hd; ++d) oh[d] = O[static_cast<std::size_t>((t - r0) * hd + d)] * inv;
        }
      }
    });
    L.wo.forward(o.data(), T, tmp.data(), kern);
    rows_parallel(T, D, [&](std::int64_t t) {
      for (std::int64_t i = t * D; i < (t + 1) * D; ++i) x[i] += tmp[i];
      rmsnorm(x.data() + t * D, e.mlp_norm(l).data(), D, c.norm_eps, h.data() + t * D);
    });
    Linear::forward_shared({{&L.w1, a.data()}, {&L.w3, b.data()}}, h.data(), T, kern, e.shared_decode());
    rows_parallel(T, F, [&](std::int64_t t) { silu_mul(a.data() + t * F, b.data() + t * F, F); });
    L.w2.forward(a.data(), T, tmp.data(), kern);
    rows_parallel(T, D, [&](std::int64_t t) {
      for (std::int64_t i = t * D; i < (t + 1) * D; ++i) x[i] += tmp[i];
    });
  }
  // The head over the rows whose logits are wanted, all segments in one product.
  std::vector<std::int64_t> want;  // rows, in segment order
  for (std::int64_t i = 0; i < S; ++i) {
    const Segment& sg = segs[static_cast<std::size_t>(i)];
    const std::int64_t r1 = seg_start[static_cast<std::size_t>(i + 1)];
    if (sg.logits == Logits::All) {
      for (std::int64_t r = seg_start[static_cast<std::size_t>(i)]; r < r1; ++r) want.push_back(r);
    } else if (sg.logits == Logits::Last) {
      want.push_back(r1 - 1);
    }
  }
  const std::int64_t m = static_cast<std::int64_t>(want.size());
  std::vector<float> lg;
  if (m > 0) {
    for (std::int64_t j = 0; j < m; ++j) rmsnorm(x.data() + want[static_cast<std::size_t>(j)] * D, e.final_norm().data(), D, c.norm_eps, h.data() + j * D);
    lg.assign(static_cast<std::size_t>(m * c.vocab), 0.0f);
    W.head.forward(h.data(), m, lg.data(), kern);
  }
  out->resize(static_cast<std::size_t>(S));
  std::int64_t j = 0;
  for (std::int64_t i = 0; i < S; ++i) {
    const Segment& sg = segs[static_cast<std::size_t>(i)];
    auto& dst = (*out)[static_cast<std::size_t>(i)];
    const std::int64_t rows = sg.logits == Logits::All ? sg.n : sg.logits == Logits::Last ? 1 : 0;
    dst.assign(lg.begin() + j * c.vocab, lg.begin() + (j + rows) * c.vocab);
    j += rows;
    sg.s->pos_ += sg.n;
  }
}

}  // namespace mfqat::runtime
