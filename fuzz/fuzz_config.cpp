// libFuzzer target: the model config JSON (train --config, checkpoints' mfqat.model_config).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    mfqat::fuzz::config(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
