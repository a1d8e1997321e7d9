// libFuzzer target: the .npy parser.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    mfqat::fuzz::npy(std::vector<std::uint8_t>(data, data + size), "fuzz");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
