// The elastic LM engine: maps an anchor (or fp32 master) checkpoint once, derives the weights of
// any requested format by Slice-and-Scale on first use and caches them (bytes counted, LRU
// eviction under a budget), and runs the Llama-style byte LM of the trainer on the fused MX
// kernels with a KV cache. Switching format never re-reads the file.
// Including this header gives the whole LM API of the runtime: the engine and its weights (here),
// Linear (linear.h), HugeBuffer (memory.h), KvPool (kv_pool.h), Session (session.h), Sampler
// (sampling.h), generate and perplexity (generate.h), the kernels (gemv.h).
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
#include "mfqat/runtime/generate.h"  // generate, perplexity
#include "mfqat/runtime/linear.h"    // Linear
#include "mfqat/runtime/kv_pool.h"   // KvPool, kKvPageTokens
#include "mfqat/runtime/memory.h"    // HugeBuffer
#include "mfqat/runtime/sampling.h"  // SamplingOptions, Sampler
#include "mfqat/runtime/session.h"   // Session

namespace mfqat::hf {
class Tokenizer;
}

namespace mfqat::runtime {

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
  std::uint64_t panel_bytes = 0;   // bytes of its linears' int8-GEMM panels (KernelOptions::repack)
  std::uint64_t owned_bytes = 0;   // its arena + panels (not shared with the anchor: what the cache holds)
  double derive_seconds = 0;       // time to build from the anchor
  std::optional<mx::Format> mx_format;  // what the derived MX views point to
  // Mixed precision (Engine::weights_mixed): the format of each linear, by parameter name; the
  // views of those linears point here (map nodes do not move).
  std::map<std::string, mx::Format> linear_formats;
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
  // `path` may be a Hugging Face model directory (served as an fp32 master: see model/hf.h).
  // ctx > 0 sizes the context (KV cache and rotary tables) instead of the config's max_seq.
  static std::unique_ptr<Engine> open(const std::string& path, std::int64_t ctx = 0);
  // A random-weight model of the given shape stored as an anchor in `anchor` (no file).
  static std::unique_ptr<Engine> synthetic(const model::LmConfig& c, const mx::Format& anchor, std::uint64_t seed = 1);

  const model::LmConfig& config() const { return cfg_; }
  std::string anchor_name() const { return anchor_ ? anchor_->name : "fp32"; }
  const std::optional<mx::Format>& anchor_format() const { return anchor_; }  // nullopt: an fp32 master
  // Formats this engine can serve: the anchor's family at or below its precision (+ "fp32").
  // Then the named plans (add_plan), in the order they were added.
  std::vector<std::string> formats() const;
  // The canonical name of a servable format ("anchor" -> the anchor's name, "fp32" for a master,
  // a named plan's name); throws std::invalid_argument naming it when it is unknown or cannot be
  // derived.
  std::string canonical_format(const std::string& name) const {
    if (is_plan(name)) return name;
    return name == "fp32" || (name == "anchor" && !anchor_) ? std::string("fp32") : resolve(name).name;
  }
  // The weights in `format` (a format name, "anchor", or "fp32"), derived once and cached.
  // Throws std::invalid_argument naming the format when it cannot be derived.
  std::shared_ptr<const Weights> weights(const std::string& format);
  // Mixed precision, one format per linear: `plan` maps parameter names ("blocks.0.w1.weight",
  // from linears()) to formats, every other linear takes `rest`. Derived from the anchor on each
  // call, by the same Slice-and-Scale as weights(), and not cached; `name` labels the result.
  // Throws std::invalid_argument naming an unknown linear or a format that cannot be derived.
  std::shared_ptr<const Weights> weights_mixed(const std::map<std::string, std::string>& plan, const std::string& rest,
                                               const std::string& name) const;
  // Named plans (bits budgets served like formats, issue 22): `name` ("budget:5", "plan:mine")
  // stands for a per-linear map of formats as in weights_mixed. Once added, weights(name) derives
  // it once and caches it like a format, and formats(), canonical_format() and bits_per_weight()
  // know it, so every caller that takes a format name (sessions, the server's requests and its
  // auto levels, /v1/formats) takes a plan. Add plans before sessions start. Throws
  // std::invalid_argument naming an unknown linear, an underivable format, or a name that is
  // already a format or a plan. Returns the plan's weight-averaged bits per weight.
  double add_plan(const std::string& name, const std::map<std::string, std::string>& plan, const std::string& rest);
  bool is_plan(const std::string& name) const { return plans_.count(name) > 0; }
  // Bits per weight (scales included) of a format, a named plan or fp32 (32).
  double bits_per_weight(const std::string& name) const;
  // The quantized linears in forward order: parameter name and weight count.
  std::vector<std::pair<std::string, std::int64_t>> linears() const;
  // A servable MX format by name ("anchor" for the anchor's own), with the anchor's block size:
  // what weights() would derive. Throws std::invalid_argument naming an unknown or underivable one.
  mx::Format resolve(const std::string& name) const;
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
  // three fixed-point digits). Set before sessions start and before the first weights(): a
  // format's GEMM panels (repack) are made when it is derived, with the options of that moment.
  // Validated (throws naming the field).
  void set_kernels(const KernelOptions& k) {
    k.validate();
    kernels_ = k;
  }
  const KernelOptions& kernels() const { return kernels_; }
  // Opt-in: decode GEMVs with int8 activations (MXINT8 and 4-bit formats; see gemv.h). Faster,
  // and no longer equal to the trainer's forward within 1e-5 (activation rounding).
  void set_int8_activations(bool on) { kernels_.int8_acts = on; }
  bool int8_activations() const { return kernels_.int8_acts; }
  // Decode runs Q/K/V and W1/W3 as one gemv_shared call each (default; 64 parallel regions and
  // activation preparations per token of a 16-layer model instead of 112). false: one gemv per
  // linear, the same bits (for A/B measurements: bench/decode_ab).
  void set_shared_decode(bool on) { shared_ = on; }
  bool shared_decode() const { return shared_; }

  // The KV caches' pages (kv_pool.h): a session takes a page as its positions reach it and gives
  // them back when it ends. Pages of finished sessions stay idle (resident, so a new request does
  // not fault them in again) up to `bytes` (default: one full context); 0 frees them as sessions end.
  void set_idle_kv_bytes(std::uint64_t bytes);
  std::uint64_t idle_kv_bytes() const;
  std::uint64_t held_kv_bytes() const;  // pages running sessions hold
  KvPool& kv_pool() const { return *kv_; }
  // Bytes of the KV cache of `tokens` positions (keys and values, every layer, fp32).
  std::uint64_t kv_bytes(std::int64_t tokens) const;
  // What a session of `tokens` positions can hold at most: its pages' bytes (tokens rounded up to
  // whole pages, at most the context).
  std::uint64_t kv_reserve_bytes(std::int64_t tokens) const;

  // fixed fp32 parts
  const std::vector<float>& embedding() const { return emb_; }
  const std::vector<float>& final_norm() const { return norm_; }
  const std::vector<float>& attn_norm(std::int64_t l) const { return attn_norms_[static_cast<std::size_t>(l)]; }
  const std::vector<float>& mlp_norm(std::int64_t l) const { return mlp_norms_[static_cast<std::size_t>(l)]; }
  // Qwen2's q/k/v biases (empty vectors elsewhere) and Qwen3's per-head q/k norms of layer l.
  struct QkvBias {
    std::vector<float> q, k, v;
  };
  struct QkNorm {
    std::vector<float> q, k;
  };
  const QkvBias* qkv_bias(std::int64_t l) const { return biases_.empty() ? nullptr : &biases_[static_cast<std::size_t>(l)]; }
  const QkNorm* qk_norm(std::int64_t l) const { return qk_norms_.empty() ? nullptr : &qk_norms_[static_cast<std::size_t>(l)]; }
  // The model's tokenizer (Hugging Face models: embedded by import, or the directory's
  // tokenizer.json); nullptr for mfqat's byte-level LM, whose tokens are bytes.
  const hf::Tokenizer* tokenizer() const { return tokenizer_.get(); }
  // tokenizer_config.json's chat template and special tokens (model::Checkpoint::
  // tokenizer_config_json), and the checkpoint's path; nullopt / "" for a synthetic model.
  std::optional<std::string> tokenizer_config_json() const { return ck_ ? ck_->tokenizer_config_json() : std::nullopt; }
  std::string checkpoint_path() const { return ck_ ? ck_->path() : std::string(); }
  const std::vector<float>& rope_cos() const { return cos_; }
  const std::vector<float>& rope_sin() const { return sin_; }

 private:
  Engine() = default;
  void init_fixed();
  std::shared_ptr<Weights> build(const std::optional<mx::Format>& f, const std::map<std::string, mx::Format>* per_linear = nullptr) const;
  // The quantized linears' parameters in the order the forward runs them: per layer wq wk wv wo
  // w1 w2 w3, then the head when it is quantized (build() and linears() share it).
  std::vector<model::Param> linear_params() const;
  // A plan's formats resolved and checked against this model (weights_mixed, add_plan).
  struct NamedPlan {
    std::map<std::string, mx::Format> per;
    std::optional<mx::Format> rest;  // nullopt: fp32
    double bits = 0;
  };
  NamedPlan resolve_plan(const std::map<std::string, std::string>& plan, const std::string& rest) const;

  model::LmConfig cfg_;
  std::optional<model::Checkpoint> ck_;
  std::optional<mx::Format> anchor_;                      // nullopt: an fp32 master
  std::unique_ptr<HugeBuffer> synthetic_;                // synthetic anchor tensors' bytes
  std::map<std::string, MxView> anchor_views_;            // the anchor's MX tensors, borrowed
  std::map<std::string, NamedPlan> plans_;                // add_plan (before sessions: read without a lock)
  std::vector<std::string> plan_order_;
  std::uint64_t anchor_bytes_ = 0;
  std::vector<float> emb_, norm_, head_f32_;
  std::vector<std::vector<float>> attn_norms_, mlp_norms_;
  std::vector<QkvBias> biases_;    // per layer, qkv_bias only
  std::vector<QkNorm> qk_norms_;  // per layer, qk_norm only
  std::shared_ptr<const hf::Tokenizer> tokenizer_;
  std::vector<float> cos_, sin_;  // [max_seq, head_dim/2]
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Weights>> cache_;
  std::list<std::string> lru_;  // front = most recent
  // formats being derived (outside mu_) and the result their other callers wait for; under mu_
  std::map<std::string, std::shared_future<std::shared_ptr<const Weights>>> building_;
  std::uint64_t budget_ = 0;
  KernelOptions kernels_;
  bool shared_ = true;
  std::unique_ptr<KvPool> kv_;
  std::function<void(const std::string&)> derive_observer_;
};

}  // namespace mfqat::runtime
