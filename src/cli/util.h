// Small helpers shared by the subcommands.
#pragma once

#include <fmt/core.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mfqat::cli {

inline bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

inline bool is_safetensors(const std::string& path) { return ends_with(path, ".safetensors"); }
inline bool is_npy(const std::string& path) { return ends_with(path, ".npy"); }

inline std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} {}", b, units[u]) : fmt::format("{:.2f} {}", b, units[u]);
}

inline std::string shape_string(std::int64_t r, std::int64_t c) { return fmt::format("[{}, {}]", r, c); }

// Splits "a,b,c" (empty items dropped).
inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos <= s.size()) {
    std::size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    if (comma > pos) out.push_back(s.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return out;
}

}  // namespace mfqat::cli
