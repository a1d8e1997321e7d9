// libFuzzer target: the HTTP completion request body (POST /v1/completions).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "mfqat/mx/format.h"
#include "mfqat/runtime/server.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  try {
    const auto r = mfqat::runtime::parse_completion_request(body, 255, 256, [](const std::string& f) {
      return f == "anchor" || f == "fp32" ? f : mfqat::mx::find_format(f).name;  // throws std::invalid_argument
    });
    if (r.prompt.size() > 255 || r.max_tokens < 1 || r.max_tokens > 256 || !(r.sampling.temperature >= 0)) __builtin_trap();
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
