// `mfqat tokenize`: ids of a text under a Hugging Face tokenizer.json (see docs/tokenizers.md).
#include <fmt/core.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "commands.h"
#include "mfqat/hf/tokenizer.h"
#include "mfqat/hf/unicode.h"

namespace mfqat::cli {

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::int32_t> parse_ids(const std::string& s) {
  std::vector<std::int32_t> ids;
  std::string tok;
  auto flush = [&] {
    if (tok.empty()) return;
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(tok, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != tok.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument("--decode: not a token id: '" + tok + "'");
    ids.push_back(static_cast<std::int32_t>(v));
    tok.clear();
  };
  for (char c : s) {
    if (c == ' ' || c == ',' || c == '\t' || c == '\n' || c == '[' || c == ']') flush();
    else tok += c;
  }
  flush();
  return ids;
}

std::string join_ids(const std::vector<std::int32_t>& ids) {
  std::string s;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ' ';
    s += std::to_string(ids[i]);
  }
  return s;
}

}  // namespace

Command add_tokenize(CLI::App& app) {
  auto* sub = app.add_subcommand("tokenize", "Token ids of a text under a Hugging Face tokenizer.json (BPE: Llama, Qwen, Mistral)");
  struct Opts {
    std::string tokenizer, text, file, records;
    bool json = false, no_special = false, lossy = false, decode = false, stats = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("tokenizer", o->tokenizer, "tokenizer.json, a directory holding one, or a model file next to one")->required();
  auto* text = sub->add_option("--text", o->text, "the text to encode");
  auto* file = sub->add_option("--file", o->file, "encode the whole content of this file as one text");
  auto* recs = sub->add_option("--records", o->records, "encode each NUL-separated record of this file; one line of ids per record");
  text->excludes(file)->excludes(recs);
  file->excludes(recs);
  sub->add_flag("--json", o->json, "JSON output");
  sub->add_flag("--no-special", o->no_special, "do not add the post-processor's tokens (e.g. Llama 2's BOS)");
  sub->add_flag("--lossy", o->lossy, "replace ill-formed UTF-8 with U+FFFD (as a JavaScript TextDecoder) instead of refusing it");
  sub->add_flag("--decode", o->decode, "--text holds ids (space or comma separated): print the text they decode to");
  sub->add_flag("--stats", o->stats, "print the tokenizer and encode throughput (one thread) to stderr");
  return {sub, [o, sub]() {
    if (sub->count("--text") + sub->count("--file") + sub->count("--records") != 1)
      throw std::invalid_argument("give one of --text, --file, --records");
    const auto t0 = std::chrono::steady_clock::now();
    const hf::Tokenizer tok = hf::Tokenizer::from_file(o->tokenizer);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o->stats) fmt::print(stderr, "tokenizer: {} (loaded in {:.2f} s)\n", tok.describe(), load_s);
    const bool special = !o->no_special;

    if (o->decode) {
      if (sub->count("--text") == 0) throw std::invalid_argument("--decode reads ids from --text");
      const auto ids = parse_ids(o->text);
      const std::string bytes = tok.decode(ids, false);
      if (o->json) {
        fmt::print("{}\n", nlohmann::json{{"ids", ids}, {"text", hf::sanitize_utf8(bytes)}, {"bytes", bytes.size()}}.dump());
      } else {
        fmt::print("{}\n", hf::sanitize_utf8(bytes));
      }
      return 0;
    }

    auto prepare = [&](std::string_view in, const std::string& what) {
      if (hf::is_valid_utf8(in)) return std::string(in);
      if (o->lossy) return hf::sanitize_utf8(in);
      const std::size_t bad = hf::find_invalid_utf8(in);
      throw std::invalid_argument(what + " is not valid UTF-8 (byte " + std::to_string(bad) + "); --lossy replaces ill-formed bytes with U+FFFD");
    };

    if (sub->count("--records") > 0) {
      const std::string all = read_all(o->records);
      std::vector<std::string> texts;
      std::size_t start = 0;
      while (start <= all.size()) {
        std::size_t end = all.find('\0', start);
        if (end == std::string::npos) end = all.size();
        if (end > start || end < all.size()) texts.push_back(prepare(std::string_view(all).substr(start, end - start),
                                                                      "record " + std::to_string(texts.size())));
        start = end + 1;
      }
      std::vector<std::vector<std::int32_t>> out(texts.size());
      std::size_t bytes = 0, tokens = 0;
      const auto t1 = std::chrono::steady_clock::now();
      for (std::size_t i = 0; i < texts.size(); ++i) {
        out[i] = tok.encode(texts[i], special);
        bytes += texts[i].size();
        tokens += out[i].size();
      }
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
      std::string buf;
      for (const auto& ids : out) {
        buf += o->json ? nlohmann::json(ids).dump() : join_ids(ids);
        buf += '\n';
      }
      fmt::print("{}", buf);
      if (o->stats)
        fmt::print(stderr, "encoded {} records, {} bytes, {} tokens in {:.3f} s: {:.2f} MB/s (1 thread)\n", texts.size(), bytes,
                   tokens, s, s > 0 ? static_cast<double>(bytes) / 1e6 / s : 0.0);
      return 0;
    }

    const std::string input = sub->count("--file") == 0 ? prepare(o->text, "--text") : prepare(read_all(o->file), o->file);
    const auto t1 = std::chrono::steady_clock::now();
    const auto ids = tok.encode(input, special);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    if (o->json) {
      std::vector<std::string> toks;
      toks.reserve(ids.size());
      for (const auto id : ids) toks.push_back(hf::sanitize_utf8(tok.id_to_token(id)));
      fmt::print("{}\n", nlohmann::json{{"ids", ids}, {"tokens", toks}, {"count", ids.size()}}.dump());
    } else {
      fmt::print("{}\n", join_ids(ids));
    }
    if (o->stats)
      fmt::print(stderr, "encoded {} bytes, {} tokens in {:.3f} s: {:.2f} MB/s (1 thread)\n", input.size(), ids.size(), s,
                 s > 0 ? static_cast<double>(input.size()) / 1e6 / s : 0.0);
    return 0;
  }};
}

}  // namespace mfqat::cli
