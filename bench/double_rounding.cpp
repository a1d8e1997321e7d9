// The price of double rounding: per (anchor, target) pair and weight distribution, compare
// fp32 -> anchor -> target (Slice-and-Scale) with fp32 -> target directly.
// Prints a Markdown table (or JSON with --json).
//   build/release/bench/double_rounding [--rows R] [--cols C] [--json]
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "mfqat/convert/slice.h"
#include "mfqat/mx/stats.h"

using namespace mfqat;
using namespace mfqat::mx;

namespace {

std::vector<float> make(const std::string& dist, std::int64_t rows, std::int64_t cols) {
  std::mt19937_64 rng(11);
  std::vector<float> w(rows * cols);
  if (dist == "gaussian") {
    std::normal_distribution<float> nd(0.0f, 0.02f);
    for (auto& x : w) x = nd(rng);
  } else if (dist == "student-t3") {  // heavy tails: t with 3 degrees of freedom
    std::student_t_distribution<float> td(3.0f);
    for (auto& x : w) x = 0.02f * td(rng);
  } else {
    w = synthetic_weights(rows, cols, 11);  // per-row scales + rare 10-30 sigma outliers
  }
  return w;
}

double rel_mse(const std::vector<float>& a, const std::vector<float>& x) {
  double e = 0, s = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(a[i]) - x[i];
    e += d * d;
    s += static_cast<double>(x[i]) * x[i];
  }
  return e / s;
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t rows = 1024, cols = 4096;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--rows") && i + 1 < argc) rows = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--cols") && i + 1 < argc) cols = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--json")) json = true;
    else {
      std::fprintf(stderr, "usage: double_rounding [--rows R] [--cols C] [--json]\n");
      return 2;
    }
  }
  std::vector<std::pair<std::string, std::vector<std::string>>> anchors = {
      {"mxint8", {"mxint7", "mxint6", "mxint5", "mxint4", "mxint3", "mxint2"}},
      {"mxfp8_e4m3", {"mxfp7_e3m3", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp5_e2m2", "mxfp4_e2m1"}},
      {"mxfp8_e5m2", {"mxfp7_e3m3", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp5_e2m2", "mxfp4_e2m1"}},
  };
  if (json) std::printf("[\n");
  else {
    std::printf("%lld x %lld weights per distribution. changed = fraction of elements whose value differs between "
                "the two paths; rel. MSE = mean (q - w)^2 / mean w^2; excess = sliced / direct - 1.\n\n",
                static_cast<long long>(rows), static_cast<long long>(cols));
    std::printf("| weights | anchor | target | changed | rel. MSE direct | rel. MSE sliced | excess |\n");
    std::printf("|---|---|---|---:|---:|---:|---:|\n");
  }
  bool first = true;
  for (const char* dist : {"gaussian", "student-t3", "outliers"}) {
    const std::vector<float> w = make(dist, rows, cols);
    for (const auto& [an, targets] : anchors) {
      const PackedMatrix a = quantize(find_format(an), w.data(), rows, cols);
      for (const auto& t : targets) {
        const Format tf = find_format(t);
        const std::vector<float> direct = dequantize(quantize(tf, w.data(), rows, cols));
        const std::vector<float> sliced = dequantize(convert::slice(a, tf));
        std::int64_t changed = 0;
        for (std::size_t i = 0; i < w.size(); ++i) changed += direct[i] != sliced[i];
        const double frac = static_cast<double>(changed) / static_cast<double>(w.size());
        const double md = rel_mse(direct, w), ms = rel_mse(sliced, w);
        if (json) {
          std::printf("%s  {\"weights\": \"%s\", \"anchor\": \"%s\", \"target\": \"%s\", \"changed\": %.6g, "
                      "\"rel_mse_direct\": %.6g, \"rel_mse_sliced\": %.6g}",
                      first ? "" : ",\n", dist, an.c_str(), t.c_str(), frac, md, ms);
        } else {
          std::printf("| %s | %s | %s | %.2f%% | %.4e | %.4e | %+.2f%% |\n", dist, an.c_str(), t.c_str(), 100 * frac, md,
                      ms, 100 * (ms / md - 1));
        }
        first = false;
      }
    }
  }
  if (json) std::printf("\n]\n");
  return 0;
}
