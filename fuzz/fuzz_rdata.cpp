// libFuzzer target: R's XDR unserializer (data::unserialize: the .rdx index and .rdb blobs of R lazy-load data).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "harness_data.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    mfqat::fuzz::rdata(std::vector<std::uint8_t>(data, data + size), "fuzz");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
