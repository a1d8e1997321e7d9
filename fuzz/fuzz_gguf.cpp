// libFuzzer target: the GGUF reader (src/export/gguf_file.cpp) and every accessor on what it
// accepts, including the values of small tensors of the types mfqat reads (fuzz/harness.h).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    mfqat::fuzz::gguf_file(std::vector<std::uint8_t>(data, data + size), "fuzz");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
