// libFuzzer target: the .npy parser.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <vector>

#include "mfqat/ckpt/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto m = mfqat::ckpt::parse_npy(std::vector<std::uint8_t>(data, data + size), "fuzz");
    volatile float sink = m.data.empty() ? 0.0f : m.data.back();
    (void)sink;
  } catch (const std::exception&) {
  }
  return 0;
}
