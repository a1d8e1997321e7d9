// libFuzzer target: the tokenizer.json parser (src/hf), then, for whatever it accepts, encode of a
// few fixed texts and of the input itself (made valid UTF-8), decode and stream-decode of the
// ids. Accepted outcomes: a tokenizer, or a TokenizerError (a std::runtime_error); anything else
// (another exception, a crash, a sanitizer report, a hang) is a bug.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "mfqat/hf/tokenizer.h"
#include "mfqat/hf/unicode.h"

namespace {

void exercise(const mfqat::hf::Tokenizer& t, std::string_view text) {
  for (bool special : {true, false}) {
    const std::vector<std::int32_t> ids = t.encode(text, special);
    const std::string bytes = t.decode(ids, !special);
    mfqat::hf::StreamDecoder d(t, !special);
    std::string streamed;
    for (const auto id : ids) streamed += d.push(id);
    streamed += d.finish();
    if (streamed != mfqat::hf::sanitize_utf8(bytes)) __builtin_trap();  // the documented equality
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  try {
    const auto t = mfqat::hf::Tokenizer::from_json(input, "fuzz");
    (void)t.describe();
    for (const char* s : {"", "Hello world! It's 2024.", "  \t\n x<s></s><|endoftext|> \xC3\xA9\xE4\xB8\xAD\xF0\x9F\x99\x82"})
      exercise(t, s);
    exercise(t, mfqat::hf::sanitize_utf8(input.substr(0, 512)));
  } catch (const std::runtime_error&) {  // TokenizerError: refused file or text
  }
  return 0;
}
