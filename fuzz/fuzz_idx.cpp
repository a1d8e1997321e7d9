// libFuzzer target: the IDX reader (data::parse_idx), gunzipping inputs that start with the gzip magic.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "harness_data.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    mfqat::fuzz::idx(std::vector<std::uint8_t>(data, data + size), "fuzz");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
