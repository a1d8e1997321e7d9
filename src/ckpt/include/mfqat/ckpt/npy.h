// NumPy .npy (float32, C order) and raw little-endian float32 matrices.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mfqat::ckpt {

struct Matrix {
  std::int64_t rows = 0, cols = 0;
  std::vector<float> data;  // rows*cols, row-major
};

// Parses a .npy image: versions 1-3, dtype '<f4', fortran_order False, 1-D (one row) or 2-D.
// Throws std::runtime_error("NAME: reason") for anything else or for a size mismatch.
Matrix parse_npy(const std::vector<std::uint8_t>& bytes, const std::string& name);
Matrix read_npy(const std::string& path);
std::vector<std::uint8_t> encode_npy(const Matrix& m);
void write_npy(const std::string& path, const Matrix& m);  // atomic

// Raw little-endian float32 with a given shape; the file size must be rows*cols*4 exactly.
Matrix read_raw_f32(const std::string& path, std::int64_t rows, std::int64_t cols);
void write_raw_f32(const std::string& path, const Matrix& m);  // atomic

}  // namespace mfqat::ckpt
