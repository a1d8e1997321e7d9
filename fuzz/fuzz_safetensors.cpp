// libFuzzer target: the safetensors reader and MX metadata validation, every accessor on whatever
// it accepts (data spans, MX loads, dequantize of small tensors), then, for files with a model
// config, the model checkpoint checks (anchor format and block size agreement) and parameter reads.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    mfqat::fuzz::safetensors(std::vector<std::uint8_t>(data, data + size), "fuzz");
  } catch (const std::runtime_error&) {
  } catch (const std::invalid_argument&) {  // a bad model config
  }
  return 0;
}
