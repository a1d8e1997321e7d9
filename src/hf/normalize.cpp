// Normalizers: each rewrites the text of one section (the text between added tokens).
#include "normalize.h"

#include <utility>
#include <vector>

#include "pcre_regex.h"

namespace mfqat::hf::detail {

namespace {

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<NormalizerPtr> parts) : parts_(std::move(parts)) {}
  void apply(std::string& text) const override {
    for (const auto& p : parts_) p->apply(text);
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
  std::vector<NormalizerPtr> parts_;
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string p) : prepend_(std::move(p)) {}
  void apply(std::string& text) const override {
    if (!text.empty()) text = prepend_ + text;
  }
  std::string describe() const override { return "Prepend"; }

 private:
  std::string prepend_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(std::string_view pattern, bool literal, std::string content)
      : re_(pattern, literal), literal_(literal), pattern_(pattern), content_(std::move(content)) {}
  void apply(std::string& text) const override {
    std::vector<std::pair<std::size_t, std::size_t>> m;
    if (literal_) {
      for (std::size_t p = text.find(pattern_); p != std::string::npos; p = text.find(pattern_, p + pattern_.size()))
        m.emplace_back(p, p + pattern_.size());
    } else {
      re_.find_all(text, m);
    }
    if (m.empty()) return;
    std::string out;
    out.reserve(text.size() + m.size() * content_.size());
    std::size_t prev = 0;
    for (const auto& [b, e] : m) {
      out.append(text, prev, b - prev);
      out += content_;
      prev = e;
    }
    out.append(text, prev, std::string::npos);
    text = std::move(out);
  }
  std::string describe() const override { return "Replace"; }

 private:
  Regex re_;
  bool literal_;
  std::string pattern_;
  std::string content_;
};

class UnicodeNormalizer final : public Normalizer {
 public:
  UnicodeNormalizer(NormForm f, std::string name) : form_(f), name_(std::move(name)) {}
  void apply(std::string& text) const override { text = unicode_normalize(text, form_); }
  std::string describe() const override { return name_; }

 private:
  NormForm form_;
  std::string name_;
};

class LowercaseNormalizer final : public Normalizer {
 public:
  void apply(std::string& text) const override { text = unicode_lowercase(text); }
  std::string describe() const override { return "Lowercase"; }
};

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void apply(std::string& text) const override {
    std::size_t b = 0, e = text.size();
    if (left_) {
      while (b < e) {
        std::size_t i = b;
        if (!is_white_space(next_codepoint(text, i))) break;
        b = i;
      }
    }
    if (right_) {
      while (e > b) {
        std::size_t s = e - 1;
        while (s > b && (static_cast<unsigned char>(text[s]) & 0xC0) == 0x80) --s;
        std::size_t i = s;
        if (!is_white_space(next_codepoint(text, i))) break;
        e = s;
      }
    }
    text = text.substr(b, e - b);
  }
  std::string describe() const override { return "Strip"; }

 private:
  bool left_, right_;
};

}  // namespace

// A {"String": s} or {"Regex": r} pattern object.
std::pair<std::string, bool> parse_pattern(const json& j, const JsonCtx& ctx, const std::string& path) {
  if (!j.is_object()) ctx.fail(path, "expected {\"String\": ...} or {\"Regex\": ...}");
  if (const json* s = ctx.optional(j, "String")) {
    if (!s->is_string()) ctx.fail(path + ".String", "expected a string");
    if (s->get_ref<const std::string&>().empty()) ctx.fail(path + ".String", "empty pattern");
    return {s->get<std::string>(), true};
  }
  if (const json* r = ctx.optional(j, "Regex")) {
    if (!r->is_string()) ctx.fail(path + ".Regex", "expected a string");
    return {r->get<std::string>(), false};
  }
  ctx.fail(path, "expected {\"String\": ...} or {\"Regex\": ...}");
}

NormalizerPtr make_normalizer(const json& j, const JsonCtx& ctx, const std::string& path) {
  if (j.is_null()) return nullptr;
  const std::string t = ctx.type(j, path);
  if (t == "Sequence") {
    std::vector<NormalizerPtr> parts;
    ctx.each(j, "normalizers", path, [&](const json& e, const std::string& at) {
      if (auto p = make_normalizer(e, ctx, at)) parts.push_back(std::move(p));
    });
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  if (t == "Prepend") return std::make_unique<PrependNormalizer>(ctx.string(j, "prepend", path));
  if (t == "Replace") {
    const auto [pat, literal] = parse_pattern(ctx.member(j, "pattern", path), ctx, path + ".pattern");
    try {
      return std::make_unique<ReplaceNormalizer>(pat, literal, ctx.string(j, "content", path));
    } catch (const std::invalid_argument& e) {
      ctx.fail(path + ".pattern", e.what());
    }
  }
  if (t == "NFC") return std::make_unique<UnicodeNormalizer>(NormForm::NFC, t);
  if (t == "NFD") return std::make_unique<UnicodeNormalizer>(NormForm::NFD, t);
  if (t == "NFKC") return std::make_unique<UnicodeNormalizer>(NormForm::NFKC, t);
  if (t == "NFKD") return std::make_unique<UnicodeNormalizer>(NormForm::NFKD, t);
  if (t == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (t == "Strip")
    return std::make_unique<StripNormalizer>(ctx.boolean_or(j, "strip_left", path, false),
                                             ctx.boolean_or(j, "strip_right", path, false));
  ctx.unsupported(path, "normalizer", t, "Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip");
}

}  // namespace mfqat::hf::detail
