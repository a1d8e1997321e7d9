// PCRE2 wrapper: compile (with JIT), iterate matches with bounded effort.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "pcre_regex.h"

#include <pcre2.h>

#include <stdexcept>
#include <string>

#include "mfqat/hf/tokenizer.h"
#include "text.h"

namespace mfqat::hf::detail {

struct Regex::Code {
  pcre2_code* code = nullptr;
  pcre2_match_context* mctx = nullptr;
  bool jit = false;
  ~Code() {
    if (mctx) pcre2_match_context_free(mctx);
    if (code) pcre2_code_free(code);
  }
};

std::string translate_pattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 16);
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      if (n == 's') {
        out += "\\p{White_Space}";
      } else if (n == 'S') {
        out += "\\P{White_Space}";
      } else {
        out += p[i];
        out += n;
      }
      ++i;
    } else {
      out += p[i];
    }
  }
  return out;
}

namespace {
std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  const int n = pcre2_get_error_message(code, buf, sizeof buf);
  return n > 0 ? std::string(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(n)) : "error " + std::to_string(code);
}

// One match-data block per thread, reused by every pattern (only the whole match is read).
pcre2_match_data* thread_match_data() {
  struct Holder {
    pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
    ~Holder() { pcre2_match_data_free(md); }
  };
  thread_local Holder h;
  if (h.md == nullptr) throw TokenizerError("out of memory (PCRE2 match data)");
  return h.md;
}
}  // namespace

Regex::Regex(std::string_view pattern, bool literal) : code_(std::make_unique<Code>()), source_(pattern) {
  const std::string translated = literal ? std::string(pattern) : translate_pattern(pattern);
  int err = 0;
  PCRE2_SIZE off = 0;
  const std::uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(), opts, &err, &off, nullptr);
  if (code_->code == nullptr)
    throw std::invalid_argument("regex does not compile: " + pcre2_message(err) + " at offset " + std::to_string(off));
  code_->jit = pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE) == 0;
  code_->mctx = pcre2_match_context_create(nullptr);
  if (code_->mctx == nullptr) throw std::invalid_argument("out of memory (PCRE2 match context)");
  // Bounded effort per match: a pathological pattern fails with an error instead of hanging.
  pcre2_set_match_limit(code_->mctx, 10'000'000);
  pcre2_set_depth_limit(code_->mctx, 100'000);
}

Regex::~Regex() = default;

void Regex::find_all(std::string_view s, std::vector<std::pair<std::size_t, std::size_t>>& out) const {
  pcre2_match_data* md = thread_match_data();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  std::size_t start = 0;
  std::uint32_t extra = 0;
  while (start <= s.size()) {
    int rc = pcre2_match(code_->code, subject, s.size(), start, PCRE2_NO_UTF_CHECK | extra, md, code_->mctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      extra = PCRE2_NO_JIT;  // the interpreter keeps its backtracking state on the heap
      continue;
    }
    if (rc == PCRE2_ERROR_NOMATCH) return;
    if (rc < 0) throw TokenizerError("regex " + quote(source_) + " failed: " + pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const std::size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      start = e;
    } else {
      if (b >= s.size()) return;
      start = b + utf8_len(static_cast<unsigned char>(s[b]));
    }
  }
}

}  // namespace mfqat::hf::detail
