// tokenizer.json -> TokenizerImpl. Anything this implementation does not do exactly is refused
// with one line naming the file and the JSON path, never approximated.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "json_util.h"
#include "tokenizer_impl.h"

namespace mfqat::hf::detail {

namespace {

constexpr std::int64_t kMaxId = (1 << 24) - 1;

VocabMap parse_vocab(const json& model, const JsonCtx& ctx, std::int64_t& max_id) {
  const json& v = ctx.member(model, "vocab", "model");
  if (!v.is_object()) ctx.fail("model.vocab", "expected an object of token -> id (a list is the Unigram format)");
  VocabMap vocab;
  vocab.reserve(v.size());
  for (const auto& [tok, idj] : v.items()) {
    if (!idj.is_number_integer() || (idj.is_number_unsigned() && idj.get<std::uint64_t>() > static_cast<std::uint64_t>(kMaxId)) ||
        idj.get<std::int64_t>() < 0 || idj.get<std::int64_t>() > kMaxId)
      ctx.fail("model.vocab", "the id of " + quote(tok) + " is not an integer in [0, " + std::to_string(kMaxId) + "]");
    const auto id = idj.get<std::int64_t>();
    max_id = std::max(max_id, id);
    vocab[tok] = static_cast<std::int32_t>(id);
  }
  return vocab;
}

std::vector<std::pair<std::string, std::string>> parse_merges(const json& model, const JsonCtx& ctx) {
  std::vector<std::pair<std::string, std::string>> merges;
  const json* m = ctx.optional(model, "merges");
  if (m == nullptr) return merges;
  if (!m->is_array()) ctx.fail("model.merges", "expected an array");
  merges.reserve(m->size());
  for (std::size_t i = 0; i < m->size(); ++i) {
    const json& e = (*m)[i];
    const std::string path = "model.merges[" + std::to_string(i) + "]";
    if (e.is_string()) {
      const std::string& s = e.get_ref<const std::string&>();
      const std::size_t sp = s.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 == s.size() || s.find(' ', sp + 1) != std::string::npos)
        ctx.fail(path, "expected \"left right\" (two tokens, one space), got " + quote(s));
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
    } else {
      ctx.fail(path, "expected \"left right\" or [\"left\", \"right\"]");
    }
  }
  return merges;
}

std::vector<AddedToken> parse_added(const json& root, const JsonCtx& ctx, std::int64_t& max_id) {
  std::vector<AddedToken> out;
  const json* a = ctx.optional(root, "added_tokens");
  if (a == nullptr) return out;
  if (!a->is_array()) ctx.fail("added_tokens", "expected an array");
  for (std::size_t i = 0; i < a->size(); ++i) {
    const json& e = (*a)[i];
    const std::string path = "added_tokens[" + std::to_string(i) + "]";
    AddedToken t;
    t.id = static_cast<std::int32_t>(ctx.integer_or(e, "id", path, -1, 0, kMaxId));
    if (t.id < 0) ctx.fail(path, "missing \"id\"");
    t.content = ctx.string(e, "content", path);
    if (t.content.empty()) ctx.fail(path + ".content", "empty");
    t.special = ctx.boolean_or(e, "special", path, false);
    t.lstrip = ctx.boolean_or(e, "lstrip", path, false);
    t.rstrip = ctx.boolean_or(e, "rstrip", path, false);
    t.normalized = ctx.boolean_or(e, "normalized", path, !t.special);
    t.single_word = ctx.boolean_or(e, "single_word", path, false);
    max_id = std::max<std::int64_t>(max_id, t.id);
    out.push_back(std::move(t));
  }
  return out;
}

void check_id(const TokenizerImpl& impl, std::int64_t id, const JsonCtx& ctx, const std::string& path) {
  if (id < 0 || id >= static_cast<std::int64_t>(impl.id_to_token.size()) || impl.id_to_token[id].empty())
    ctx.fail(path, "id " + std::to_string(id) + " is not a token of this vocab");
}

void parse_post(const json& j, const JsonCtx& ctx, const std::string& path, const TokenizerImpl& impl, PostProcessor& post) {
  const std::string t = ctx.type(j, path);
  if (t == "ByteLevel") return;  // offsets only
  if (t == "Sequence") {
    ctx.each(j, "processors", path, [&](const json& e, const std::string& at) { parse_post(e, ctx, at, impl, post); });
    return;
  }
  if (t == "BertProcessing" || t == "RobertaProcessing") {
    std::int32_t ids[2];
    const char* keys[2] = {"cls", "sep"};
    for (int k = 0; k < 2; ++k) {
      const json& e = ctx.member(j, keys[k], path);
      if (!e.is_array() || e.size() != 2 || !e[1].is_number_integer()) ctx.fail(path + "." + keys[k], "expected [token, id]");
      check_id(impl, e[1].get<std::int64_t>(), ctx, path + "." + keys[k]);
      ids[k] = static_cast<std::int32_t>(e[1].get<std::int64_t>());
    }
    post.prefix.insert(post.prefix.begin(), ids[0]);
    post.suffix.push_back(ids[1]);
    return;
  }
  if (t == "TemplateProcessing") {
    const json& single = ctx.member(j, "single", path);
    if (!single.is_array()) ctx.fail(path + ".single", "expected a list of pieces");
    const json* specials = ctx.optional(j, "special_tokens");
    std::vector<std::int32_t> before, after;
    bool seen_a = false;
    for (std::size_t i = 0; i < single.size(); ++i) {
      const json& item = single[i];
      const std::string ipath = path + ".single[" + std::to_string(i) + "]";
      if (const json* st = ctx.optional(item, "SpecialToken")) {
        const std::string name = ctx.string(*st, "id", ipath + ".SpecialToken");
        const json* entry = specials && specials->is_object() && specials->contains(name) ? &(*specials)[name] : nullptr;
        if (entry == nullptr) ctx.fail(ipath, "special token " + quote(name) + " is missing from special_tokens");
        const json& ids = ctx.member(*entry, "ids", path + ".special_tokens");
        if (!ids.is_array()) ctx.fail(path + ".special_tokens", "expected \"ids\": [...]");
        for (const json& id : ids) {
          if (!id.is_number_integer()) ctx.fail(path + ".special_tokens", "expected integer ids");
          check_id(impl, id.get<std::int64_t>(), ctx, path + ".special_tokens." + name);
          (seen_a ? after : before).push_back(static_cast<std::int32_t>(id.get<std::int64_t>()));
        }
      } else if (const json* sq = ctx.optional(item, "Sequence")) {
        if (ctx.string(*sq, "id", ipath + ".Sequence") != "A" || seen_a)
          ctx.fail(ipath, "the single-sequence template must hold $A exactly once");
        seen_a = true;
      } else {
        ctx.fail(ipath, "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
      }
    }
    if (!seen_a) ctx.fail(path + ".single", "the template has no $A");
    post.prefix.insert(post.prefix.begin(), before.begin(), before.end());
    post.suffix.insert(post.suffix.end(), after.begin(), after.end());
    return;
  }
  ctx.unsupported(path, "post-processor", t, "TemplateProcessing, ByteLevel, BertProcessing, RobertaProcessing, Sequence");
}

}  // namespace

std::unique_ptr<TokenizerImpl> load_tokenizer_json(std::string_view text, const std::string& origin) {
  const JsonCtx ctx{origin};
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    std::string what = e.what();
    std::replace(what.begin(), what.end(), '\n', ' ');
    ctx.fail("", "not valid JSON (" + what + ")");
  }
  if (!root.is_object()) ctx.fail("", "expected a JSON object (a tokenizer.json)");
  auto impl = std::make_unique<TokenizerImpl>();
  impl->origin = origin;

  const json& model = ctx.member(root, "model", "");
  if (!model.is_object()) ctx.fail("model", "expected an object");
  std::string type;
  if (const json* t = ctx.optional(model, "type")) {
    if (!t->is_string()) ctx.fail("model.type", "expected a string");
    type = t->get<std::string>();
  } else if (ctx.optional(model, "merges") != nullptr) {
    type = "BPE";  // old files omit the type; a vocab with merges is BPE
  } else {
    ctx.fail("model", "no \"type\" and no merges: cannot tell the model kind (only BPE is supported)");
  }
  if (type != "BPE") ctx.unsupported("model.type", "model", type, "BPE");
  if (const json* d = ctx.optional(model, "dropout")) {
    if (!d->is_number() || d->get<double>() != 0.0) ctx.fail("model.dropout", "BPE dropout is not supported");
  }
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (const json* s = ctx.optional(model, k); s && !(s->is_string() && s->get_ref<const std::string&>().empty()))
      ctx.fail(std::string("model.") + k, "a non-empty prefix/suffix is not supported");
  }

  // The pre-tokenizer decides the alphabet of the model (GPT-2 bytes or characters).
  impl->normalizer = make_normalizer(root.value("normalizer", json()), ctx, "normalizer");
  impl->pre_tokenizer = make_pre_tokenizer(root.value("pre_tokenizer", json()), ctx, "pre_tokenizer");
  impl->byte_level = impl->pre_tokenizer && impl->pre_tokenizer->byte_level();

  std::int64_t max_id = -1;
  VocabMap vocab = parse_vocab(model, ctx, max_id);
  const std::size_t vocab_entries = vocab.size();
  Bpe::Options opt;
  opt.byte_level = impl->byte_level;
  opt.fuse_unk = ctx.boolean_or(model, "fuse_unk", "model", false);
  opt.byte_fallback = ctx.boolean_or(model, "byte_fallback", "model", false);
  opt.ignore_merges = ctx.boolean_or(model, "ignore_merges", "model", false);
  const std::string unk = ctx.string_or(model, "unk_token", "model", "");
  if (!unk.empty()) {
    if (auto it = vocab.find(unk); it != vocab.end()) opt.unk_id = it->second;
  }
  const auto merges = parse_merges(model, ctx);
  std::vector<AddedToken> added = parse_added(root, ctx, max_id);
  if (max_id < 0) ctx.fail("model.vocab", "empty vocab");
  if (max_id > 2 * static_cast<std::int64_t>(vocab_entries + added.size()) + 65536)
    ctx.fail("model.vocab", "ids up to " + std::to_string(max_id) + " for " + std::to_string(vocab_entries + added.size()) +
                                " tokens: too sparse");

  impl->id_to_token.assign(static_cast<std::size_t>(max_id) + 1, std::string());
  for (const auto& [tok, id] : vocab)
    if (impl->id_to_token[id].empty() || tok < impl->id_to_token[id]) impl->id_to_token[id] = tok;
  impl->added_of_id.assign(impl->id_to_token.size(), -1);
  for (std::size_t i = 0; i < added.size(); ++i) {
    impl->id_to_token[added[i].id] = added[i].content;
    impl->added_of_id[added[i].id] = static_cast<std::int32_t>(i);
  }
  try {
    impl->model = std::make_unique<Bpe>(std::move(vocab), merges, opt);
  } catch (const std::invalid_argument& e) {
    ctx.fail("model.merges", e.what());
  }
  impl->added = std::make_unique<AddedVocab>(std::move(added));

  if (const json* p = ctx.optional(root, "post_processor")) {
    parse_post(*p, ctx, "post_processor", *impl, impl->post);
    impl->post.name = ctx.type(*p, "post_processor");
  }
  impl->decoder = make_decoder(root.value("decoder", json()), ctx, "decoder");
  return impl;
}

}  // namespace mfqat::hf::detail
