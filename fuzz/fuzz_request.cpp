// libFuzzer target: the HTTP completion request body (POST /v1/completions).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    mfqat::fuzz::request(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
