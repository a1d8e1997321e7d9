// The elastic LM engine: maps an anchor (or fp32 master) checkpoint once, derives the weights of
// any requested format by Slice-and-Scale on first use and caches them (bytes counted, LRU
// eviction under a budget), and runs the Llama-style byte LM of the trainer on the fused MX
// kernels with a KV cache. Switching format never re-reads the file.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <list>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "mfqat/model/checkpoint.h"
#include "mfqat/runtime/gemv.h"

namespace mfqat::runtime {

// One linear layer's weight: MX-packed, or fp32 (the "fp32" format). An MX weight in the
// anchor's own format borrows the anchor's bytes (a view into the file mapping or the synthetic
// anchor); a derived one (and an fp32 one) lives in its Weights' arena.
struct Linear {
  bool is_mx = false;
  MxView mx;                   // is_mx: the anchor's bytes or the arena's
  const float* f32 = nullptr;  // fp32: rows x cols in the arena (the head: the engine's)
  std::int64_t rows = 0, cols = 0;
  std::uint64_t bytes() const;  // bytes of this weight in its format
  // y [n, rows] = x [n, cols] W^T with the loops k selects; k.int8_acts: decode (n = 1) with int8
  // activations where the format has an integer path (gemv_q8), fp32 elsewhere.
  void forward(const float* x, std::int64_t n, float* y, const KernelOptions& k = {}) const;
  // Several linears that read the same x (Q, K, V; W1, W3): the same results as forward on each,
  // decode (n = 1, fp32 activations, all MX of one format and width) in one gemv_shared call.
  static void forward_shared(std::initializer_list<std::pair<const Linear*, float*>> ls, const float* x, std::int64_t n,
                             const KernelOptions& k = {}, bool shared = true);
};

// Memory for the large, long-lived buffers: a format's weights, the synthetic anchor, KV caches.
// From 8 MiB up it is aligned to 2 MiB and advised for transparent huge pages (a no-op where THP
// is off): on the development VM (PVM, shadow page tables) 4-bit decode of the large synthetic
// model ran 7-33 % faster with its weights in 2 MiB pages (three alternating runs, docs/perf.md), and a 4 KiB page fault
// costs ~20 us (a fresh KV cache touched two new pages per layer and token). Left uninitialised.
class HugeBuffer {
 public:
  explicit HugeBuffer(std::size_t bytes);
  ~HugeBuffer();
  HugeBuffer(const HugeBuffer&) = delete;
  HugeBuffer& operator=(const HugeBuffer&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(p_); }
  std::uint64_t bytes() const { return bytes_; }
  bool huge() const { return huge_; }  // 2 MiB-aligned and advised

 private:
  void* p_ = nullptr;
  std::uint64_t bytes_ = 0;
  bool huge_ = false;
};

// One session's KV cache: keys then values, [layers, heads, max_seq, head_dim] each, in one
// HugeBuffer (a position is written before it is read).
class KvBuffer {
 public:
  explicit KvBuffer(std::size_t floats) : buf_(floats * sizeof(float)), n_(floats) {}
  float* data() const { return buf_.as<float>(); }
  std::size_t floats() const { return n_; }
  std::uint64_t bytes() const { return buf_.bytes(); }

 private:
  HugeBuffer buf_;
  std::size_t n_ = 0;
};

struct LayerWeights {
  Linear wq, wk, wv, wo, w1, w2, w3;
};

// Everything the forward needs at one format. Immutable once built; shared by sessions.
struct Weights {
  std::string format;  // a format name or "fp32"
  double bits_per_weight = 32;
  std::vector<LayerWeights> layers;
  Linear head;
  std::uint64_t linear_bytes = 0;  // bytes of the layers' linears (+ head when quantized) in this format
  std::uint64_t owned_bytes = 0;   // bytes of its arena (not shared with the anchor: what the cache holds)
  double derive_seconds = 0;       // time to build from the anchor
  std::optional<mx::Format> mx_format;  // what the derived MX views point to
  std::unique_ptr<HugeBuffer> arena;    // the derived (and fp32) weights' bytes
};

struct CacheEntry {
  std::string format;
  std::uint64_t bytes = 0;  // owned bytes (0 for the anchor's own format: it borrows the anchor)
  double derive_seconds = 0;
};

class Engine {
 public:
  // Opens an anchor or a master checkpoint (LM only; mmap'd, validated; an anchor with NaN/Inf
  // codes or scales is refused naming the tensor).
  static std::unique_ptr<Engine> open(const std::string& path);
  // A random-weight model of the given shape stored as an anchor in `anchor` (no file).
  static std::unique_ptr<Engine> synthetic(const model::LmConfig& c, const mx::Format& anchor, std::uint64_t seed = 1);

  const model::LmConfig& config() const { return cfg_; }
  std::string anchor_name() const { return anchor_ ? anchor_->name : "fp32"; }
  const std::optional<mx::Format>& anchor_format() const { return anchor_; }  // nullopt: an fp32 master
  // Formats this engine can serve: the anchor's family at or below its precision (+ "fp32").
  std::vector<std::string> formats() const;
  // The canonical name of a servable format ("anchor" -> the anchor's name); throws
  // std::invalid_argument naming it when it is unknown or cannot be derived.
  std::string canonical_format(const std::string& name) const { return name == "fp32" ? name : resolve(name).name; }
  // The weights in `format` (a format name, "anchor", or "fp32"), derived once and cached.
  // Throws std::invalid_argument naming the format when it cannot be derived.
  std::shared_ptr<const Weights> weights(const std::string& format);
  // Resident bytes of the fixed parts (embedding, norms, head) and of the anchor itself.
  std::uint64_t base_bytes() const;
  std::uint64_t anchor_bytes() const { return anchor_bytes_; }
  std::vector<CacheEntry> cache() const;
  std::uint64_t cache_bytes() const;
  // Keep at most `bytes` of derived weights (0 = unlimited); least recently used go first.
  void set_cache_budget(std::uint64_t bytes);
  void evict(const std::string& format);
  // Called (on the deriving thread, outside every engine lock) when a format starts to be
  // derived: counts and timing in tests; nullptr clears it.
  void set_derive_observer(std::function<void(const std::string&)> f) { derive_observer_ = std::move(f); }
  // The loops this engine's products run (default: the best this CPU has, fp32 activations,
  // three fixed-point digits). Set before sessions start; validated (throws naming the field).
  void set_kernels(const KernelOptions& k) {
    k.validate();
    kernels_ = k;
  }
  const KernelOptions& kernels() const { return kernels_; }
  // Opt-in: decode GEMVs with int8 activations (MXINT8 and 4-bit formats; see gemv.h). Faster,
  // and no longer equal to the trainer's forward within 1e-4 (activation rounding).
  void set_int8_activations(bool on) { kernels_.int8_acts = on; }
  bool int8_activations() const { return kernels_.int8_acts; }
  // Decode runs Q/K/V and W1/W3 as one gemv_shared call each (default; 64 parallel regions and
  // activation preparations per token of a 16-layer model instead of 112). false: one gemv per
  // linear, the same bits (for A/B measurements: bench/decode_ab).
  void set_shared_decode(bool on) { shared_ = on; }
  bool shared_decode() const { return shared_; }

  // KV caches of finished sessions are kept for the next ones (their pages are resident, so a
  // new request does not fault them in again): at most `n` idle (default 1; the server keeps one
  // per worker). 0 frees them as sessions end.
  void set_idle_kv_limit(std::size_t n);
  std::uint64_t idle_kv_bytes() const;
  // A KV buffer of this model's size, idle or new; give it back when the session ends.
  std::unique_ptr<KvBuffer> take_kv() const;
  void give_kv(std::unique_ptr<KvBuffer> b) const noexcept;

  // fixed fp32 parts
  const std::vector<float>& embedding() const { return emb_; }
  const std::vector<float>& final_norm() const { return norm_; }
  const std::vector<float>& attn_norm(std::int64_t l) const { return attn_norms_[static_cast<std::size_t>(l)]; }
  const std::vector<float>& mlp_norm(std::int64_t l) const { return mlp_norms_[static_cast<std::size_t>(l)]; }
  const std::vector<float>& rope_cos() const { return cos_; }
  const std::vector<float>& rope_sin() const { return sin_; }

 private:
  Engine() = default;
  void init_fixed();
  std::shared_ptr<Weights> build(const std::optional<mx::Format>& f) const;
  mx::Format resolve(const std::string& name) const;

  model::LmConfig cfg_;
  std::optional<model::Checkpoint> ck_;
  std::optional<mx::Format> anchor_;                      // nullopt: an fp32 master
  std::unique_ptr<HugeBuffer> synthetic_;                // synthetic anchor tensors' bytes
  std::map<std::string, MxView> anchor_views_;            // the anchor's MX tensors, borrowed
  std::uint64_t anchor_bytes_ = 0;
  std::vector<float> emb_, norm_, head_f32_;
  std::vector<std::vector<float>> attn_norms_, mlp_norms_;
  std::vector<float> cos_, sin_;  // [max_seq, head_dim/2]
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Weights>> cache_;
  std::list<std::string> lru_;  // front = most recent
  // formats being derived (outside mu_) and the result their other callers wait for; under mu_
  std::map<std::string, std::shared_future<std::shared_ptr<const Weights>>> building_;
  std::uint64_t budget_ = 0;
  KernelOptions kernels_;
  bool shared_ = true;
  mutable std::vector<std::unique_ptr<KvBuffer>> idle_kv_;  // under mu_
  std::function<void(const std::string&)> derive_observer_;
  std::size_t idle_kv_limit_ = 1;
};

// One sequence: its KV cache and position, at one format (switch formats between sequences).
class Session {
 public:
  Session(const Engine& e, std::shared_ptr<const Weights> w);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  // Runs the tokens through the model (prefill when several); returns the logits [vocab] of the
  // last one. Throws when the sequence would exceed max_seq.
  std::vector<float> feed(const std::vector<int>& tokens);
  // All positions' logits [n, vocab] of the fed tokens (for perplexity).
  std::vector<float> feed_all(const std::vector<int>& tokens);
  std::int64_t position() const { return pos_; }
  const Weights& weights() const { return *w_; }

 private:
  void forward(const std::vector<int>& tokens, bool all_logits, std::vector<float>* out);
  const Engine& e_;
  std::shared_ptr<const Weights> w_;
  std::int64_t pos_ = 0;
  // from the engine's idle buffers when one is there (see KvBuffer); k_, v_ point into it
  std::unique_ptr<KvBuffer> kv_;
  float* k_ = nullptr;
  float* v_ = nullptr;
};

struct SamplingOptions {
  double temperature = 0;  // 0: greedy
  int top_k = 0;           // 0: off
  double top_p = 1.0;      // 1: off
  std::uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& o) : o_(o), rng_(o.seed) {}
  int sample(const std::vector<float>& logits);

 private:
  SamplingOptions o_;
  std::mt19937_64 rng_;
};

struct Generation {
  std::string text;  // the generated bytes (prompt excluded)
  std::int64_t prompt_tokens = 0, new_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

// Prompt -> up to n new bytes (stops early at max_seq).
Generation generate(const Engine& e, std::shared_ptr<const Weights> w, const std::string& prompt, std::int64_t n,
                    const SamplingOptions& s);

// Mean next-byte cross-entropy (nats) over windows of `seq` + 1 bytes of `text`. max_windows 0
// (or more windows than the text holds): consecutive windows, every byte after the first scored
// once; otherwise max_windows windows spread evenly from the start to the end of the text (as
// the trainer's evaluation does), so that a sample is not just the text's opening pages.
struct Perplexity {
  double loss = 0;
  std::int64_t bytes = 0;
};
Perplexity perplexity(const Engine& e, const std::shared_ptr<const Weights>& w, const std::vector<std::uint8_t>& text, std::int64_t seq,
                      std::int64_t max_windows = 0);

}  // namespace mfqat::runtime
