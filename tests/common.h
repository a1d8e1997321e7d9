#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "mfqat/model/config.h"
#include "mfqat/mx/format.h"

// Every format the tests sweep: the registry plus generic narrow FP formats (including the
// corner cases E1, M0 and E5).
inline std::vector<mfqat::mx::Format> all_test_formats(int block_size = 32) {
  std::vector<mfqat::mx::Format> out;
  for (const auto& f : mfqat::mx::registry()) out.push_back(f.with_block_size(block_size));
  for (const char* g : {"mxfp5_e2m2", "mxfp7_e3m3", "mxfp3_e1m1", "mxfp8_e2m5", "mxfp5_e3m1", "mxfp4_e3m0",
                        "mxfp6_e5m0"}) {
    out.push_back(mfqat::mx::find_format(g, block_size));
  }
  return out;
}

// max |a - b| / max |b|: a difference relative to the scale of the reference b (logits).
inline double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return m / scale;
}

// The message of what fn throws ("" when it does not throw).
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// Shapes for the GEMM kernels' tests: rows, columns and row counts n that are not multiples of
// any tile (16 rows, 12 activation rows, 16 or 8 blocks of 32 columns): one matrix at every
// n = 2..65, single rows and columns, partial k-panels.
struct GemmCase {
  std::int64_t rows, cols;
  std::vector<std::int64_t> ns;
};
inline std::vector<GemmCase> ragged_gemm_cases() {
  std::vector<std::int64_t> every;
  for (std::int64_t n = 2; n <= 65; ++n) every.push_back(n);
  return {{17, 69, every}, {1, 33, {2, 3, 13}}, {15, 32, {2, 12, 25}}, {16, 1, {2, 5}}, {33, 1000, {2, 11, 24, 37}}, {100, 2065, {2, 12, 65}}, {40, 31, {4, 9}}};
}

inline std::string fmt_name(const mfqat::mx::Format& f) { return f.name + "/bs" + std::to_string(f.block_size); }

inline std::uint32_t bits_of(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Random tensors of several characters: normal, heavy-tailed (Student-t like), wide dynamic
// range (log-uniform magnitudes), with some exact zeros and ties.
inline std::vector<float> random_tensor(std::size_t n, std::uint32_t seed, int kind) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ud(-40.0f, 40.0f);
  std::vector<float> v(n);
  for (auto& x : v) {
    switch (kind % 4) {
      case 0: x = nd(rng); break;
      case 1: x = nd(rng) / std::max(0.05f, std::fabs(nd(rng))); break;
      case 2: x = (rng() & 1 ? 1.0f : -1.0f) * std::exp2(ud(rng)); break;
      default: x = (rng() % 7 == 0) ? 0.0f : std::round(nd(rng) * 8.0f) / 8.0f; break;
    }
  }
  return v;
}

// A small LM for the runtime tests (engine, server): 64 wide, 2 layers, 4 heads.
inline mfqat::model::LmConfig small_lm(std::int64_t max_seq) {
  mfqat::model::LmConfig c;
  c.dim = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.max_seq = max_seq;
  return c;
}
