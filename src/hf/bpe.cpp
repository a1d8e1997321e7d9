// BPE: the lowest-ranked adjacent pair is merged first, the leftmost among equal ranks (as the
// Rust crate's heap of (rank, position) and transformers.js's queue of rank + position bias).
#include "bpe.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "mfqat/hf/tokenizer.h"
#include "text.h"

namespace mfqat::hf::detail {

void PairMap::reserve(std::size_t n) {
  std::size_t cap = 16;
  unsigned bits = 4;
  while (cap < 2 * n + 16) {
    cap <<= 1;
    ++bits;
  }
  keys_.assign(cap, kEmpty);
  vals_.assign(cap, 0);
  mask_ = cap - 1;
  shift_ = 64 - bits;
  size_ = 0;
}

void PairMap::insert(std::int32_t a, std::int32_t b, std::uint32_t rank, std::int32_t merged) {
  if (2 * (size_ + 1) > keys_.size()) throw std::logic_error("PairMap: reserve() too small");
  const std::uint64_t k = key(a, b);
  std::size_t i = slot(k);
  while (keys_[i] != kEmpty && keys_[i] != k) i = (i + 1) & mask_;
  if (keys_[i] == kEmpty) ++size_;
  keys_[i] = k;
  vals_[i] = (static_cast<std::uint64_t>(rank) << 32) | static_cast<std::uint32_t>(merged);
}

namespace {
constexpr std::string_view kMeta = "\xE2\x96\x81";  // U+2581, SentencePiece's space
}  // namespace

std::size_t& Bpe::linear_max() {
  static std::size_t v = 12;
  return v;
}

Bpe::Bpe(VocabMap vocab, const std::vector<std::pair<std::string, std::string>>& merges, Options opt)
    : vocab_(std::move(vocab)), opt_(opt) {
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
  std::fill(std::begin(fallback_ids_), std::end(fallback_ids_), -1);
  static const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    const std::string fb = std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
    if (auto it = vocab_.find(fb); it != vocab_.end()) fallback_ids_[b] = it->second;
    if (opt_.byte_level) {
      if (auto it = vocab_.find(byte_to_utf8()[b]); it != vocab_.end()) byte_ids_[b] = it->second;
    }
  }
  if (opt_.byte_level && opt_.ignore_merges) {
    raw_vocab_.reserve(vocab_.size());
    std::string raw;
    for (const auto& [tok, id] : vocab_) {
      raw.clear();
      if (byte_level_to_bytes(tok, raw)) raw_vocab_.emplace(raw, id);
    }
  }
  // Not with ignore_merges: that looks the whole piece up, so cutting it would change the ids.
  if (!opt_.byte_level && !opt_.ignore_merges && vocab_.count(kMeta) > 0) {
    cut_meta_ = true;
    for (const auto& [tok, id] : vocab_) {
      for (std::size_t p = tok.find(kMeta, 1); p != std::string::npos && cut_meta_; p = tok.find(kMeta, p + 1))
        cut_meta_ = p >= kMeta.size() && tok.compare(p - kMeta.size(), kMeta.size(), kMeta) == 0;
      if (!cut_meta_) break;
    }
  }
  merges_.reserve(merges.size());
  std::string joined;
  for (std::size_t r = 0; r < merges.size(); ++r) {
    const auto& [a, b] = merges[r];
    const auto ia = vocab_.find(a), ib = vocab_.find(b);
    joined = a;
    joined += b;
    const auto im = vocab_.find(joined);
    if (ia == vocab_.end() || ib == vocab_.end() || im == vocab_.end())
      throw std::invalid_argument("merge " + std::to_string(r) + " (" + quote(a) + ", " + quote(b) +
                                  ") names a token that is not in the vocab");
    merges_.insert(ia->second, ib->second, static_cast<std::uint32_t>(r), im->second);
  }
}

void Bpe::add_unknown(std::string_view ch, std::vector<Sym>& syms) const {
  if (opt_.byte_fallback) {
    bool all = true;
    for (char c : ch) all = all && fallback_ids_[static_cast<unsigned char>(c)] >= 0;
    if (all) {
      for (char c : ch) syms.push_back({fallback_ids_[static_cast<unsigned char>(c)], 0, 0, 1});
      return;
    }
  }
  if (opt_.unk_id < 0) throw TokenizerError("text has a character that is not in the vocab, and the model has no unk_token");
  if (opt_.fuse_unk && !syms.empty() && syms.back().id == opt_.unk_id) {
    syms.back().len += static_cast<std::uint32_t>(ch.size());
    return;
  }
  syms.push_back({opt_.unk_id, 0, 0, static_cast<std::uint32_t>(ch.size())});
}

void Bpe::initial_symbols(std::string_view piece, std::vector<Sym>& syms) const {
  syms.clear();
  if (opt_.byte_level) {
    for (std::size_t i = 0; i < piece.size(); ++i) {
      const auto b = static_cast<unsigned char>(piece[i]);
      if (byte_ids_[b] >= 0) syms.push_back({byte_ids_[b], 0, 0, 1});
      else add_unknown(piece.substr(i, 1), syms);
    }
  } else {
    std::size_t i = 0;
    while (i < piece.size()) {
      const std::size_t n = std::min(utf8_len(static_cast<unsigned char>(piece[i])), piece.size() - i);
      const std::string_view ch = piece.substr(i, n);
      if (auto it = vocab_.find(ch); it != vocab_.end()) syms.push_back({it->second, 0, 0, static_cast<std::uint32_t>(n)});
      else add_unknown(ch, syms);
      i += n;
    }
  }
  for (std::size_t k = 0; k < syms.size(); ++k) {
    syms[k].prev = static_cast<std::int32_t>(k) - 1;
    syms[k].next = k + 1 < syms.size() ? static_cast<std::int32_t>(k) + 1 : -1;
  }
}

void Bpe::merge_linear(std::vector<Sym>& s) const {
  while (true) {
    std::uint32_t best_rank = UINT32_MAX;
    std::int32_t best = -1, best_id = -1;
    for (std::int32_t i = 0; s[i].next != -1; i = s[i].next) {
      std::uint32_t r;
      std::int32_t m;
      if (merges_.find(s[i].id, s[s[i].next].id, r, m) && r < best_rank) {
        best_rank = r;
        best = i;
        best_id = m;
      }
    }
    if (best < 0) return;
    const std::int32_t nx = s[best].next;
    s[best].id = best_id;
    s[best].len += s[nx].len;
    s[nx].len = 0;
    s[best].next = s[nx].next;
    if (s[nx].next != -1) s[s[nx].next].prev = best;
  }
}

void Bpe::merge_heap(std::vector<Sym>& s) const {
  struct Cand {
    std::uint32_t rank;
    std::int32_t pos;
    std::int32_t merged;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  // A binary min-heap on a reused buffer (std::priority_queue would allocate per piece).
  thread_local std::vector<Cand> heap;
  heap.clear();
  const auto greater = std::greater<Cand>{};
  auto consider = [&](std::int32_t i) {
    if (i < 0 || s[i].next == -1) return;
    std::uint32_t r;
    std::int32_t m;
    if (merges_.find(s[i].id, s[s[i].next].id, r, m)) {
      heap.push_back({r, i, m});
      std::push_heap(heap.begin(), heap.end(), greater);
    }
  };
  for (std::int32_t i = 0; i != -1; i = s[i].next) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), greater);
    const Cand c = heap.back();
    heap.pop_back();
    Sym& a = s[c.pos];
    if (a.len == 0 || a.next == -1) continue;
    std::uint32_t r;
    std::int32_t m;
    if (!merges_.find(a.id, s[a.next].id, r, m) || r != c.rank || m != c.merged) continue;  // stale
    const std::int32_t nx = a.next;
    a.id = c.merged;
    a.len += s[nx].len;
    s[nx].len = 0;
    a.next = s[nx].next;
    if (a.next != -1) s[a.next].prev = c.pos;
    consider(a.prev);
    consider(c.pos);
  }
}

void Bpe::merge(std::vector<Sym>& syms) const {
  if (syms.size() < 2) return;
  if (syms.size() <= linear_max()) merge_linear(syms);
  else merge_heap(syms);
}

void Bpe::encode_uncached(std::string_view piece, std::vector<std::int32_t>& out) const {
  if (opt_.ignore_merges) {
    const VocabMap& v = opt_.byte_level ? raw_vocab_ : vocab_;
    if (auto it = v.find(piece); it != v.end()) {
      out.push_back(it->second);
      return;
    }
  }
  thread_local std::vector<Sym> syms;
  initial_symbols(piece, syms);
  merge(syms);
  for (std::int32_t i = syms.empty() ? -1 : 0; i != -1; i = syms[i].next) out.push_back(syms[i].id);
}

void Bpe::encode_piece(std::string_view piece, std::vector<std::int32_t>& out, WordCache* cache) const {
  if (!cut_meta_) {
    encode_cached(piece, out, cache);
    return;
  }
  std::size_t start = 0;
  for (std::size_t p = piece.find(kMeta, 1); p != std::string_view::npos; p = piece.find(kMeta, p + kMeta.size())) {
    if (p - start >= kMeta.size() && piece.compare(p - kMeta.size(), kMeta.size(), kMeta) == 0) continue;  // inside a run
    encode_cached(piece.substr(start, p - start), out, cache);
    start = p;
  }
  encode_cached(piece.substr(start), out, cache);
}

void Bpe::encode_cached(std::string_view piece, std::vector<std::int32_t>& out, WordCache* cache) const {
  if (cache == nullptr || piece.size() > WordCache::kMaxKey) {
    encode_uncached(piece, out);
    return;
  }
  const std::uint64_t h = std::hash<std::string_view>{}(piece);
  WordCache::Slot& slot = cache->slots[h & (WordCache::kSlots - 1)];
  if (slot.n_ids > 0 && slot.hash == h && slot.key_len == piece.size() &&
      std::memcmp(slot.key, piece.data(), piece.size()) == 0) {
    out.insert(out.end(), slot.ids, slot.ids + slot.n_ids);
    return;
  }
  const std::size_t start = out.size();
  encode_uncached(piece, out);
  const std::size_t n = out.size() - start;
  if (n == 0 || n > WordCache::kMaxIds) return;
  slot.hash = h;
  slot.key_len = static_cast<std::uint8_t>(piece.size());
  slot.n_ids = static_cast<std::uint8_t>(n);
  std::memcpy(slot.key, piece.data(), piece.size());
  std::copy(out.begin() + static_cast<std::ptrdiff_t>(start), out.end(), slot.ids);
}

}  // namespace mfqat::hf::detail
