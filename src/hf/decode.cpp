// Decoder chain: parsing and the per-token transform.
#include "decode.h"

#include "mfqat/hf/unicode.h"
#include "normalize.h"
#include "text.h"

namespace mfqat::hf::detail {

namespace {

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty() || s.find(from) == std::string::npos) return;
  std::string out;
  out.reserve(s.size());
  std::size_t prev = 0;
  for (std::size_t i = s.find(from); i != std::string::npos; i = s.find(from, prev)) {
    out.append(s, prev, i - prev);
    out += to;
    prev = i + from.size();
  }
  out.append(s, prev, std::string::npos);
  s.swap(out);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

void strip(std::string& s, std::string_view content, std::size_t start, std::size_t stop) {
  std::size_t b = 0, e = s.size();
  for (std::size_t k = 0; k < start && e - b >= content.size() && s.compare(b, content.size(), content) == 0; ++k)
    b += content.size();
  for (std::size_t k = 0; k < stop && e - b >= content.size() && s.compare(e - content.size(), content.size(), content) == 0; ++k)
    e -= content.size();
  s = s.substr(b, e - b);
}

struct Builder {
  const JsonCtx& ctx;
  DecoderChain& chain;
  bool fused = false;

  void add(const json& j, const std::string& path) {
    const std::string t = ctx.type(j, path);
    if (t == "Sequence") {
      ctx.each(j, "decoders", path, [&](const json& e, const std::string& at) { add(e, at); });
      return;
    }
    if (t == "Fuse") {
      fused = true;
      return;
    }
    if (t == "Strip") {
      const std::string content = ctx.string(j, "content", path);
      const auto start = static_cast<std::size_t>(ctx.integer_or(j, "start", path, 0, 0, 1 << 20));
      const auto stop = static_cast<std::size_t>(ctx.integer_or(j, "stop", path, 0, 0, 1 << 20));
      if (content.empty() || !is_valid_utf8(content) || utf8_len(static_cast<unsigned char>(content[0])) != content.size())
        ctx.fail(path + ".content", "expected one character");
      if (fused) {
        if (!chain.strip_content.empty() && chain.strip_content != content) ctx.fail(path, "two Strip decoders after Fuse");
        chain.strip_content = content;
        chain.strip_start += start;
        chain.strip_stop += stop;
      } else {
        chain.steps.push_back({DecoderChain::Kind::Strip, "", "", start, stop, content});
      }
      return;
    }
    if (fused) ctx.fail(path, "decoder " + quote(t) + " after Fuse is not supported (only Strip may follow Fuse)");
    if (t == "Replace") {
      const auto [pat, literal] = parse_pattern(ctx.member(j, "pattern", path), ctx, path + ".pattern");
      if (!literal) ctx.fail(path + ".pattern", "a Regex pattern in the Replace decoder is not supported");
      chain.steps.push_back({DecoderChain::Kind::Replace, pat, ctx.string(j, "content", path), 0, 0, ""});
      return;
    }
    if (t == "ByteFallback") {
      chain.steps.push_back({DecoderChain::Kind::ByteFallback, "", "", 0, 0, ""});
      return;
    }
    if (t == "ByteLevel") {
      chain.steps.push_back({DecoderChain::Kind::ByteLevel, "", "", 0, 0, ""});
      return;
    }
    if (t == "Metaspace") {
      const std::string rep = ctx.string_or(j, "replacement", path, "\xE2\x96\x81");
      bool prefix = ctx.boolean_or(j, "add_prefix_space", path, true);
      if (const json* ps = ctx.optional(j, "prepend_scheme")) prefix = !(ps->is_string() && ps->get<std::string>() == "never");
      chain.steps.push_back({DecoderChain::Kind::Metaspace, rep, " ", prefix ? 1u : 0u, 0, ""});
      return;
    }
    ctx.unsupported(path, "decoder", t, "Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace");
  }
};

}  // namespace

void DecoderChain::token_bytes(std::string_view token, bool added, std::size_t index, std::string& out) const {
  if (!present) {
    if (index > 0) out += ' ';
    out += token;
    return;
  }
  std::string s(token);
  for (const Step& st : steps) {
    switch (st.kind) {
      case Kind::Replace: replace_all(s, st.from, st.to); break;
      case Kind::ByteFallback:
        if (s.size() == 6 && s.compare(0, 3, "<0x") == 0 && s[5] == '>') {
          const int hi = hex_digit(s[3]), lo = hex_digit(s[4]);
          if (hi >= 0 && lo >= 0) s.assign(1, static_cast<char>(hi * 16 + lo));
        }
        break;
      case Kind::ByteLevel:
        if (!added) {
          std::string raw;
          if (byte_level_to_bytes(s, raw)) s.swap(raw);
        }
        break;
      case Kind::Metaspace:
        replace_all(s, st.from, " ");
        if (st.start && index == 0 && !s.empty() && s[0] == ' ') s.erase(0, 1);
        break;
      case Kind::Strip: strip(s, st.content, st.start, st.stop); break;
    }
  }
  out += s;
}

DecoderChain make_decoder(const json& j, const JsonCtx& ctx, const std::string& path) {
  DecoderChain chain;
  if (j.is_null()) return chain;
  chain.present = true;
  Builder b{ctx, chain};
  b.add(j, path);
  chain.name = ctx.type(j, path);
  return chain;
}

}  // namespace mfqat::hf::detail
