// libFuzzer target: data::gunzip (gzip files) and data::inflate_zlib (.rdb blobs: 4-byte length + zlib).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "harness_data.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    mfqat::fuzz::gzip(std::vector<std::uint8_t>(data, data + size), "fuzz");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
