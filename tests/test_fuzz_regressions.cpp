// Replays every input the fuzzers ever crashed on (fuzz/regressions/) and the seed corpora
// through the parsers: each must parse or throw std::runtime_error, nothing else.
#include <gtest/gtest.h>

#include <filesystem>

#include "mfqat/ckpt/file.h"
#include "mfqat/ckpt/npy.h"
#include "mfqat/ckpt/safetensors.h"

namespace fs = std::filesystem;
using namespace mfqat;

TEST(FuzzRegressions, ParsersSurviveEveryKnownInput) {
  int files = 0;
  for (const char* dir : {"regressions", "corpus/safetensors", "corpus/npy"}) {
    const fs::path d = fs::path(MFQAT_FUZZ_DIR) / dir;
    if (!fs::exists(d)) continue;
    for (const auto& e : fs::directory_iterator(d)) {
      const auto bytes = ckpt::read_file(e.path().string());
      ++files;
      try {
        const auto f = ckpt::SafetensorsFile::from_bytes(bytes, e.path().string());
        for (const auto& m : f.mx_tensors()) (void)mx::dequantize(f.load_mx(m));
      } catch (const std::runtime_error&) {
      }
      try {
        (void)ckpt::parse_npy(bytes, e.path().string());
      } catch (const std::runtime_error&) {
      }
    }
  }
  EXPECT_GE(files, 5);
}
