// Slice-and-Scale throughput per (anchor, target) pair on a 64 MiB anchor (8192 x 8192 8-bit
// elements + scales), in anchor bytes per second, against the dequantize -> requantize path
// (the library's SIMD kernels through an fp32 buffer), alternated in one loop, and memcpy of the
// anchor, in one run. Figures are minima over the iterations (see bm_pair).
//   build/release/bench/convert_bench --benchmark_out=bench/results/convert_bench.json --benchmark_out_format=json
//   /usr/bin/python3 scripts/convert_table.py bench/results/convert_bench.json
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <thread>

#include "mfqat/convert/slice.h"
#include "mfqat/mx/parallel.h"

using namespace mfqat;
using namespace mfqat::mx;

namespace {

constexpr std::int64_t kRows = 8192, kCols = 8192;

const std::vector<float>& weights() {
  static const std::vector<float> w = [] {
    std::vector<float> v(kRows * kCols);
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    for (auto& e : v) e = nd(rng);
    return v;
  }();
  return w;
}

const PackedMatrix& anchor(const std::string& name) {
  static std::map<std::string, PackedMatrix> cache;
  auto it = cache.find(name);
  if (it == cache.end()) it = cache.emplace(name, quantize(find_format(name), weights().data(), kRows, kCols)).first;
  return it->second;
}

std::int64_t anchor_bytes(const PackedMatrix& a) { return static_cast<std::int64_t>(a.elements.size() + a.scales.size()); }

double seconds_since(std::chrono::steady_clock::time_point t0);

void bm_memcpy(benchmark::State& st, int threads) {
  set_num_threads(threads);
  const PackedMatrix& a = anchor("mxint8");
  std::vector<std::uint8_t> dst(a.elements.size());
  const std::int64_t n = static_cast<std::int64_t>(a.elements.size());
  double best = 1e30;
  for (auto _ : st) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(n, 1 << 20, [&](std::int64_t b, std::int64_t e) { std::memcpy(dst.data() + b, a.elements.data() + b, e - b); });
    benchmark::ClobberMemory();
    const double t = seconds_since(t0);
    best = std::min(best, t);
    st.SetIterationTime(t);
  }
  st.SetBytesProcessed(st.iterations() * anchor_bytes(a));
  st.counters["memcpy_GBps"] = static_cast<double>(anchor_bytes(a)) / best / 1e9;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Slice and dequantize->requantize alternate inside one loop, so both see the same machine state
// (this VM's neighbours move single timings by 25 % and more); the minimum over the iterations of
// each is reported as GB/s of anchor bytes, and their ratio as the speed-up.
void bm_pair(benchmark::State& st, const std::string& src, const std::string& dst_name, int threads) {
  set_num_threads(threads);
  const PackedMatrix& a = anchor(src);
  const Format dst = find_format(dst_name);
  std::vector<float> tmp(kRows * kCols);
  std::vector<std::uint8_t> el(kRows * dst.packed_row_bytes(kCols)), sc(kRows * dst.blocks_per_row(kCols));
  double best_slice = 1e30, best_requant = 1e30;
  for (auto _ : st) {
    auto t0 = std::chrono::steady_clock::now();
    convert::slice(a.format, a.elements.data(), a.scales.data(), kRows, kCols, dst, el.data(), sc.data());
    benchmark::ClobberMemory();
    const double ts = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    dequantize(a.format, a.elements.data(), a.scales.data(), kRows, kCols, tmp.data());
    quantize(dst, tmp.data(), kRows, kCols, el.data(), sc.data());
    benchmark::ClobberMemory();
    const double tr = seconds_since(t0);
    best_slice = std::min(best_slice, ts);
    best_requant = std::min(best_requant, tr);
    st.SetIterationTime(ts + tr);
  }
  const double bytes = static_cast<double>(anchor_bytes(a));
  st.counters["slice_GBps"] = bytes / best_slice / 1e9;
  st.counters["requant_GBps"] = bytes / best_requant / 1e9;
  st.counters["speedup"] = best_requant / best_slice;
}

}  // namespace

int main(int argc, char** argv) {
  const unsigned hc = std::thread::hardware_concurrency();
  std::vector<int> threads = {1};
  if (hc > 1) threads.push_back(static_cast<int>(hc));
  std::vector<std::pair<std::string, std::string>> pairs;
  for (int b = 7; b >= 2; --b) pairs.push_back({"mxint8", "mxint" + std::to_string(b)});
  for (const char* s : {"mxfp8_e4m3", "mxfp8_e5m2"}) {
    for (const char* d : {"mxfp7_e3m3", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp5_e2m2", "mxfp4_e2m1"}) pairs.push_back({s, d});
  }
  for (int t : threads) {
    benchmark::RegisterBenchmark(("memcpy/t" + std::to_string(t)).c_str(), bm_memcpy, t)->UseManualTime()->Unit(benchmark::kMillisecond);
  }
  for (const auto& [s, d] : pairs) {
    for (int t : threads) {
      std::string name = "pair/";
      name.append(s).append("/").append(d).append("/t").append(std::to_string(t));
      benchmark::RegisterBenchmark(name.c_str(), bm_pair, s, d, t)->UseManualTime()->MinTime(2.0)->Unit(benchmark::kMillisecond);
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
