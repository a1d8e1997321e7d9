// `mfqat data prepare`: fetches and decodes the bundled data sets into a data directory.
//   - Jane Austen's six novels from Debian's r-cran-janeaustenr (R lazy-load data, decoded here);
//   - Fashion-MNIST from Debian's dataset-fashion-mnist (IDX files).
// Packages are taken from the system when installed, else fetched with `apt-get download` and
// unpacked with `dpkg-deb -x` into DIR/cache (nothing is installed). Splits are deterministic.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mfqat::data {

// The held-out test novel; every other novel gives its last kValidFraction of lines to
// validation and the rest to training.
inline constexpr const char* kTestNovel = "persuasion";
inline constexpr double kValidFraction = 0.05;
inline constexpr int kFashionValid = 5000;  // last images of the training set

struct PrepareOptions {
  std::string data_dir = "data";
  bool force = false;        // redo even when the manifest says the data are there
  bool austen = true, fashion = true;
};

struct PreparedFile {
  std::string path;
  std::uint64_t bytes = 0;
  std::uint64_t fnv1a = 0;  // 64-bit FNV-1a of the content
};

struct PrepareResult {
  bool cached = false;  // nothing to do: the manifest matched
  std::vector<PreparedFile> files;
  std::vector<std::pair<std::string, std::size_t>> novels;  // name, lines
};

using Logger = std::function<void(const std::string&)>;
PrepareResult prepare(const PrepareOptions& opt, const Logger& log);

// Splits novels (name -> lines) into train / valid / test texts as described above.
struct TextSplits {
  std::string train, valid, test;
};
TextSplits split_novels(const std::vector<std::pair<std::string, std::vector<std::string>>>& novels);

std::uint64_t fnv1a64(const void* data, std::size_t n);

}  // namespace mfqat::data
