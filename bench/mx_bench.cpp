// Throughput of fake-quant, quantize and dequantize per format on a 64 MiB fp32 tensor, in GB/s
// of fp32 data, for the scalar reference and the SIMD path, on 1 thread and on all threads,
// against memcpy of the same buffer measured in the same run.
//   build/release/bench/mx_bench --benchmark_format=json > bench.json
//   /usr/bin/python3 scripts/bench_table.py bench.json
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mfqat/mx/parallel.h"
#include "mfqat/mx/quantize.h"

using namespace mfqat;
using namespace mfqat::mx;

namespace {

constexpr std::int64_t kRows = 4096, kCols = 4096;  // 16 Mi floats = 64 MiB
constexpr std::int64_t kN = kRows * kCols;

const std::vector<float>& input() {
  static const std::vector<float> x = [] {
    std::vector<float> v(kN);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& e : v) e = nd(rng);
    return v;
  }();
  return x;
}

int all_threads() {
  const unsigned hc = std::thread::hardware_concurrency();
  return hc ? static_cast<int>(hc) : 1;
}

void finish(benchmark::State& st, int threads) {
  st.SetBytesProcessed(st.iterations() * kN * 4);
  st.counters["threads"] = threads;
}

void bm_memcpy(benchmark::State& st, int threads) {
  set_num_threads(threads);
  const auto& x = input();
  std::vector<float> y(kN);
  for (auto _ : st) {
    parallel_for(kN, 1 << 20, [&](std::int64_t b, std::int64_t e) { std::memcpy(y.data() + b, x.data() + b, (e - b) * 4); });
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  finish(st, threads);
}

void bm_fake_quant(benchmark::State& st, const Format& f, Isa isa, int threads) {
  set_num_threads(threads);
  const auto& x = input();
  std::vector<float> y(kN);
  for (auto _ : st) {
    fake_quantize(f, x.data(), kRows, kCols, y.data(), {}, nullptr, isa);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  finish(st, threads);
}

void bm_quantize(benchmark::State& st, const Format& f, Isa isa, int threads) {
  set_num_threads(threads);
  const auto& x = input();
  std::vector<std::uint8_t> el(kRows * f.packed_row_bytes(kCols)), sc(kRows * f.blocks_per_row(kCols));
  for (auto _ : st) {
    quantize(f, x.data(), kRows, kCols, el.data(), sc.data(), {}, isa);
    benchmark::DoNotOptimize(el.data());
    benchmark::ClobberMemory();
  }
  finish(st, threads);
}

void bm_dequantize(benchmark::State& st, const Format& f, Isa isa, int threads) {
  set_num_threads(threads);
  const PackedMatrix q = quantize(f, input().data(), kRows, kCols);
  std::vector<float> y(kN);
  for (auto _ : st) {
    dequantize(f, q.elements.data(), q.scales.data(), kRows, kCols, y.data(), isa);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  finish(st, threads);
}

void register_all() {
  std::vector<int> thread_counts = {1};
  if (all_threads() > 1) thread_counts.push_back(all_threads());
  std::vector<Isa> isas = {Isa::Scalar};
  if (isa_supported(Isa::Avx2)) isas.push_back(Isa::Avx2);
  std::vector<Format> formats = registry();
  formats.push_back(find_format("mxfp5_e2m2"));
  formats.push_back(find_format("mxfp7_e3m3"));
  for (int t : thread_counts) {
    benchmark::RegisterBenchmark(("memcpy/t" + std::to_string(t)).c_str(), bm_memcpy, t)->UseRealTime()->Unit(benchmark::kMillisecond);
  }
  for (const Format& f : formats) {
    for (Isa isa : isas) {
      for (int t : thread_counts) {
        if (isa == Isa::Scalar && t > 1) continue;  // the reference is measured single-threaded
        const std::string suffix = "/" + f.name + "/" + isa_name(isa) + "/t" + std::to_string(t);
        benchmark::RegisterBenchmark(("fake_quant" + suffix).c_str(), bm_fake_quant, f, isa, t)->UseRealTime()->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("quantize" + suffix).c_str(), bm_quantize, f, isa, t)->UseRealTime()->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("dequantize" + suffix).c_str(), bm_dequantize, f, isa, t)->UseRealTime()->Unit(benchmark::kMillisecond);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
