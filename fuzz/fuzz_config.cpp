// libFuzzer target: the model config JSON (train --config, checkpoints' mfqat.model_config).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "mfqat/model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto c = mfqat::model::ModelConfig::from_json(text, "fuzz");
    // an accepted config must describe a buildable model
    volatile std::int64_t n = c.param_count();
    (void)n;
    (void)mfqat::model::ModelConfig::from_json(c.to_json(), "round-trip");
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
