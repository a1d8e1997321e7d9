// libFuzzer target: chat templates (src/hf/jinja.cpp): parse and render (harness_chat.h).
#include <cstddef>
#include <cstdint>
#include <string>

#include "harness_chat.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    mfqat::fuzz::chat_template(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  } catch (const mfqat::hf::JinjaError&) {
  }
  return 0;
}
