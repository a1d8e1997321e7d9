// Replays every input the fuzzers ever crashed on (fuzz/regressions/) and the seed corpora
// through the parsers: each must parse or throw std::runtime_error, nothing else.
#include <gtest/gtest.h>

#include <filesystem>

#include "mfqat/ckpt/file.h"
#include "mfqat/ckpt/npy.h"
#include "mfqat/ckpt/safetensors.h"
#include "mfqat/model/config.h"
#include "mfqat/mx/format.h"
#include "mfqat/runtime/server.h"

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

// The text parsers (model config JSON, HTTP completion body): accept or throw
// std::invalid_argument, for every corpus and regression input.
TEST(FuzzRegressions, TextParsersSurviveEveryKnownInput) {
  int files = 0, accepted = 0;
  for (const char* dir : {"regressions", "corpus/config", "corpus/request"}) {
    const fs::path d = fs::path(MFQAT_FUZZ_DIR) / dir;
    if (!fs::exists(d)) continue;
    for (const auto& e : fs::directory_iterator(d)) {
      const auto bytes = ckpt::read_file(e.path().string());
      const std::string text(bytes.begin(), bytes.end());
      ++files;
      try {
        const auto c = model::ModelConfig::from_json(text, e.path().string());
        EXPECT_EQ(model::ModelConfig::from_json(c.to_json(), "again").to_json(), c.to_json());
        ++accepted;
      } catch (const std::invalid_argument&) {
      }
      try {
        const auto r = runtime::parse_completion_request(text, 255, 256, [](const std::string& f) {
          return f == "anchor" ? f : mx::find_format(f).name;
        });
        EXPECT_LE(r.prompt.size(), 255u);
        ++accepted;
      } catch (const std::invalid_argument&) {
      }
    }
  }
  EXPECT_GE(files, 8);
  EXPECT_GE(accepted, 6);  // 3 good configs + 3 good requests
}
