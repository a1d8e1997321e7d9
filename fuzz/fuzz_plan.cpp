// libFuzzer target: plan and sensitivity files of `mfqat plan` (src/plan), read by eval, bench,
// generate and serve (--plan, --budget with --sensitivity).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "harness_plan.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    mfqat::fuzz::plan_file(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
