// IDX files (MNIST / Fashion-MNIST), optionally gzip'd.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mfqat::data {

struct IdxArray {
  std::vector<std::int64_t> dims;  // e.g. {60000, 28, 28} for images, {60000} for labels
  std::vector<std::uint8_t> values;
};

// Parses an IDX image of unsigned bytes (type code 0x08). Throws std::runtime_error("NAME: reason").
IdxArray parse_idx(const std::vector<std::uint8_t>& bytes, const std::string& name);
// Reads PATH, gunzipping it when it ends in .gz.
IdxArray read_idx(const std::string& path);

}  // namespace mfqat::data
