// The BPE model: merges by rank on symbol ids (a priority queue for long pieces), byte-level or
// character-level initial symbols, byte fallback, unk (fused or not), ignore_merges, and a per-piece
// cache.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mfqat::hf::detail {

struct SvHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using VocabMap = std::unordered_map<std::string, std::int32_t, SvHash, std::equal_to<>>;

// (left id, right id) -> (rank, merged id), open addressing.
class PairMap {
 public:
  void reserve(std::size_t n);
  void insert(std::int32_t a, std::int32_t b, std::uint32_t rank, std::int32_t merged);  // later inserts win
  bool find(std::int32_t a, std::int32_t b, std::uint32_t& rank, std::int32_t& merged) const {
    if (keys_.empty()) return false;
    const std::uint64_t k = key(a, b);
    std::size_t i = slot(k);
    while (true) {
      const std::uint64_t kk = keys_[i];
      if (kk == k) {
        rank = static_cast<std::uint32_t>(vals_[i] >> 32);
        merged = static_cast<std::int32_t>(vals_[i] & 0xFFFFFFFFu);
        return true;
      }
      if (kk == kEmpty) return false;
      i = (i + 1) & mask_;
    }
  }
  std::size_t size() const { return size_; }

 private:
  static constexpr std::uint64_t kEmpty = ~0ULL;
  static std::uint64_t key(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
  }
  std::size_t slot(std::uint64_t k) const { return static_cast<std::size_t>((k * 0x9E3779B97F4A7C15ULL) >> shift_) & mask_; }
  std::vector<std::uint64_t> keys_, vals_;
  std::size_t mask_ = 0, size_ = 0;
  unsigned shift_ = 64;
};

// Ids of recently seen pieces: a direct-mapped table of short pieces (no allocation, no
// clearing; a new piece evicts whatever shared its slot).
struct WordCache {
  static constexpr std::size_t kSlots = 1 << 14;
  static constexpr std::size_t kMaxKey = 46;  // bytes
  static constexpr std::size_t kMaxIds = 18;
  struct Slot {
    std::uint64_t hash = 0;
    std::uint8_t key_len = 0, n_ids = 0;  // n_ids == 0: empty
    char key[kMaxKey];
    std::int32_t ids[kMaxIds];
  };
  std::vector<Slot> slots = std::vector<Slot>(kSlots);
};

class Bpe {
 public:
  struct Options {
    std::int32_t unk_id = -1;  // -1: none
    bool fuse_unk = false;
    bool byte_fallback = false;
    bool ignore_merges = false;
    bool byte_level = false;  // pieces are raw bytes mapped through the GPT-2 alphabet
  };
  // vocab: token string (as in the file) -> id. merges: (left, right) token strings, by rank.
  // Throws std::invalid_argument (message without the file name) on merges naming unknown tokens.
  Bpe(VocabMap vocab, const std::vector<std::pair<std::string, std::string>>& merges, Options opt);

  // Appends the ids of one piece (valid UTF-8 when not byte-level). cache may be null.
  void encode_piece(std::string_view piece, std::vector<std::int32_t>& out, WordCache* cache) const;
  // True when no vocab token has "▁" right after another character: then no merge can cross the
  // start of a "▁" run, and a piece may be cut there (and cached) without changing its ids. This
  // is what keeps SentencePiece-style files (no pre-tokenizer: a whole section is one piece) fast.
  // Off with ignore_merges (which looks the whole piece up).
  bool cuts_at_metaspace() const { return cut_meta_; }

  const VocabMap& vocab() const { return vocab_; }
  std::size_t merges() const { return merges_.size(); }
  const Options& options() const { return opt_; }

  // Pieces up to this many symbols are merged by rescanning (fast for short words); longer ones
  // with a priority queue (O(n log n)). Both give the same result; exposed for the tests.
  static std::size_t& linear_max();

 private:
  struct Sym {
    std::int32_t id;
    std::int32_t prev, next;
    std::uint32_t len;  // 0: merged into its left neighbour
  };
  void initial_symbols(std::string_view piece, std::vector<Sym>& syms) const;
  void add_unknown(std::string_view ch, std::vector<Sym>& syms) const;
  void merge(std::vector<Sym>& syms) const;
  void merge_linear(std::vector<Sym>& syms) const;
  void merge_heap(std::vector<Sym>& syms) const;
  void encode_uncached(std::string_view piece, std::vector<std::int32_t>& out) const;
  void encode_cached(std::string_view piece, std::vector<std::int32_t>& out, WordCache* cache) const;

  VocabMap vocab_;
  VocabMap raw_vocab_;  // byte-level: token bytes -> id (for ignore_merges)
  PairMap merges_;
  Options opt_;
  bool cut_meta_ = false;
  std::int32_t byte_ids_[256];      // byte-level: id of each byte's stand-in, -1 when missing
  std::int32_t fallback_ids_[256];  // id of "<0xNN>", -1 when missing
};

}  // namespace mfqat::hf::detail
