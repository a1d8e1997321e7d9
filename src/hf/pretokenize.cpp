// Pre-tokenizers: cut a section into pieces, with the split semantics of the Rust `tokenizers`
// crate (SplitDelimiterBehavior, Metaspace prepend schemes).
#include "pretokenize.h"

#include <string_view>

#include "mfqat/hf/unicode.h"

#include "normalize.h"
#include "pcre_regex.h"

namespace mfqat::hf::detail {

namespace {

using Span = std::pair<std::size_t, std::size_t>;

// The segments of [b, e) given the matches inside it, marked delimiter or not, merged per behavior;
// appends the non-empty resulting pieces to `out`.
void split_span(std::size_t b, std::size_t e, const std::vector<Span>& matches, SplitBehavior behavior, bool invert,
                std::vector<Span>& out) {
  struct Seg {
    std::size_t b, e;
    bool delim;
  };
  std::vector<Seg> segs;
  segs.reserve(matches.size() * 2 + 1);
  std::size_t prev = b;
  for (const auto& [mb, me] : matches) {
    if (mb > prev) segs.push_back({prev, mb, invert});
    segs.push_back({mb, me, !invert});
    prev = me;
  }
  if (prev < e) segs.push_back({prev, e, invert});

  std::vector<Span> res;
  res.reserve(segs.size());
  switch (behavior) {
    case SplitBehavior::Removed:
      for (const auto& s : segs)
        if (!s.delim) res.emplace_back(s.b, s.e);
      break;
    case SplitBehavior::Isolated:
      for (const auto& s : segs) res.emplace_back(s.b, s.e);
      break;
    case SplitBehavior::MergedWithPrevious: {
      bool prev_delim = false;
      for (const auto& s : segs) {
        if (s.delim && !prev_delim && !res.empty()) res.back().second = s.e;
        else res.emplace_back(s.b, s.e);
        prev_delim = s.delim;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool prev_delim = false;
      std::vector<Span> rev;
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->delim && !prev_delim && !rev.empty()) rev.back().first = it->b;
        else rev.emplace_back(it->b, it->e);
        prev_delim = it->delim;
      }
      res.assign(rev.rbegin(), rev.rend());
      break;
    }
    case SplitBehavior::Contiguous: {
      bool prev_delim = false;
      bool first = true;
      for (const auto& s : segs) {
        if (!first && s.delim == prev_delim) res.back().second = s.e;
        else res.emplace_back(s.b, s.e);
        prev_delim = s.delim;
        first = false;
      }
      break;
    }
  }
  for (const auto& r : res)
    if (r.second > r.first) out.push_back(r);
}

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(std::string_view pattern, bool literal, SplitBehavior behavior, bool invert, std::string name)
      : re_(pattern, literal), behavior_(behavior), invert_(invert), name_(std::move(name)) {}
  void apply(Pieces& p) const override {
    p.next.clear();
    for (const auto& [b, e] : p.spans) {
      p.matches.clear();
      re_.find_all(std::string_view(p.buf).substr(b, e - b), p.matches);
      for (auto& m : p.matches) {
        m.first += b;
        m.second += b;
      }
      if (behavior_ == SplitBehavior::Isolated) {  // the common case, without the segment list
        std::size_t prev = b;
        for (const auto& m : p.matches) {
          if (m.first > prev) p.next.emplace_back(prev, m.first);
          p.next.push_back(m);
          prev = m.second;
        }
        if (prev < e) p.next.emplace_back(prev, e);
      } else {
        split_span(b, e, p.matches, behavior_, invert_, p.next);
      }
    }
    p.spans.swap(p.next);
  }
  std::string describe() const override { return name_; }

 private:
  Regex re_;
  SplitBehavior behavior_;
  bool invert_;
  std::string name_;
};

// Rebuilds p.buf from its spans, letting `edit` rewrite each piece; the pieces keep their order.
template <class Edit>
void rewrite_pieces(Pieces& p, Edit edit) {
  std::string nb;
  nb.reserve(p.buf.size() + p.spans.size());
  p.next.clear();
  for (std::size_t k = 0; k < p.spans.size(); ++k) {
    const auto [b, e] = p.spans[k];
    const std::size_t start = nb.size();
    edit(std::string_view(p.buf).substr(b, e - b), k, nb);
    if (nb.size() > start) p.next.emplace_back(start, nb.size());
  }
  p.buf.swap(nb);
  p.spans.swap(p.next);
}

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space),
        split_(use_regex ? std::make_unique<SplitPreTokenizer>(kGpt2Pattern, false, SplitBehavior::Isolated, false, "")
                         : nullptr) {}
  void apply(Pieces& p) const override {
    if (add_prefix_space_) {
      rewrite_pieces(p, [](std::string_view piece, std::size_t, std::string& out) {
        if (piece.front() != ' ') out += ' ';
        out += piece;
      });
    }
    if (split_) split_->apply(p);
  }
  bool byte_level() const override { return true; }
  std::string describe() const override { return split_ ? "ByteLevel(regex)" : "ByteLevel"; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<SplitPreTokenizer> split_;
};

enum class PrependScheme { Always, First, Never };

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : rep_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void apply(Pieces& p) const override {
    rewrite_pieces(p, [&](std::string_view piece, std::size_t k, std::string& out) {
      const bool starts = piece.substr(0, rep_.size()) == rep_ || piece.front() == ' ';
      const bool first = p.at_text_start && k == 0 && p.spans[0].first == 0;
      if (!starts && (scheme_ == PrependScheme::Always || (scheme_ == PrependScheme::First && first))) out += rep_;
      for (char c : piece) {
        if (c == ' ') out += rep_;
        else out += c;
      }
    });
    if (!split_) return;
    // MergedWithNext on the replacement: each piece starts at a replacement character.
    p.next.clear();
    for (const auto& [b, e] : p.spans) {
      const std::string_view s = std::string_view(p.buf).substr(b, e - b);
      std::size_t start = 0;
      for (std::size_t i = s.find(rep_, 1); i != std::string_view::npos; i = s.find(rep_, i + rep_.size())) {
        if (i > start) p.next.emplace_back(b + start, b + i);
        start = i;
      }
      p.next.emplace_back(b + start, e);
    }
    p.spans.swap(p.next);
  }
  std::string describe() const override { return "Metaspace"; }

 private:
  std::string rep_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<PreTokenizerPtr> parts) : parts_(std::move(parts)) {}
  void apply(Pieces& p) const override {
    for (const auto& t : parts_) t->apply(p);
  }
  bool byte_level() const override {
    for (const auto& t : parts_)
      if (t->byte_level()) return true;
    return false;
  }
  std::string describe() const override {
    std::string s = "Sequence[";
    for (std::size_t i = 0; i < parts_.size(); ++i) {
      if (i) s += ',';
      s += parts_[i]->describe();
    }
    return s + "]";
  }

 private:
  std::vector<PreTokenizerPtr> parts_;
};

SplitBehavior parse_behavior(const std::string& b, const JsonCtx& ctx, const std::string& path) {
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  ctx.unsupported(path, "split behavior", b, "Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous");
}

}  // namespace

PreTokenizerPtr make_pre_tokenizer(const json& j, const JsonCtx& ctx, const std::string& path) {
  if (j.is_null()) return nullptr;
  const std::string t = ctx.type(j, path);
  if (t == "Sequence") {
    std::vector<PreTokenizerPtr> parts;
    ctx.each(j, "pretokenizers", path, [&](const json& e, const std::string& at) {
      if (auto p = make_pre_tokenizer(e, ctx, at)) parts.push_back(std::move(p));
    });
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  if (t == "Split") {
    const auto [pat, literal] = parse_pattern(ctx.member(j, "pattern", path), ctx, path + ".pattern");
    const SplitBehavior b = parse_behavior(ctx.string(j, "behavior", path), ctx, path + ".behavior");
    const bool invert = ctx.boolean_or(j, "invert", path, false);
    try {
      return std::make_unique<SplitPreTokenizer>(pat, literal, b, invert, literal ? "Split(string)" : "Split(regex)");
    } catch (const std::invalid_argument& e) {
      ctx.fail(path + ".pattern", e.what());
    }
  }
  if (t == "ByteLevel")
    return std::make_unique<ByteLevelPreTokenizer>(ctx.boolean_or(j, "add_prefix_space", path, true),
                                                   ctx.boolean_or(j, "use_regex", path, true));
  if (t == "Metaspace") {
    const std::string rep = ctx.string_or(j, "replacement", path, "\xE2\x96\x81");
    if (rep.empty() || !is_valid_utf8(rep)) ctx.fail(path + ".replacement", "expected one character");
    PrependScheme scheme = ctx.boolean_or(j, "add_prefix_space", path, true) ? PrependScheme::Always : PrependScheme::Never;
    if (const json* ps = ctx.optional(j, "prepend_scheme")) {
      const std::string s = ps->is_string() ? ps->get<std::string>() : "";
      if (s == "always") scheme = PrependScheme::Always;
      else if (s == "first") scheme = PrependScheme::First;
      else if (s == "never") scheme = PrependScheme::Never;
      else ctx.fail(path + ".prepend_scheme", "expected \"always\", \"first\" or \"never\"");
    }
    return std::make_unique<MetaspacePreTokenizer>(rep, scheme, ctx.boolean_or(j, "split", path, true));
  }
  if (t == "Digits") {
    const bool individual = ctx.boolean_or(j, "individual_digits", path, false);
    return std::make_unique<SplitPreTokenizer>(individual ? "\\p{N}" : "\\p{N}+", false, SplitBehavior::Isolated, false,
                                               "Digits");
  }
  ctx.unsupported(path, "pre-tokenizer", t, "Sequence, Split, ByteLevel, Metaspace, Digits");
}

}  // namespace mfqat::hf::detail
