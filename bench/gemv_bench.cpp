// MX GEMV throughput in GB/s of weight bytes (packed elements + scales) for every registry format,
// on a matrix far beyond the last-level cache, against in the same run: a plain read of a buffer
// of the same size class (the memory roof) and fp32 GEMV (OpenBLAS cblas_sgemv) on the same
// matrix shape. Scalar reference paths for two formats show what the fused SIMD decode buys.
//   build/release/bench/gemv_bench --benchmark_format=json > docs/gemv_bench.json
//   python3 scripts/gemv_table.py docs/gemv_bench.json
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <immintrin.h>

#include <map>
#include <memory>
#include <random>
#include <thread>

#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/gemv.h"

using namespace mfqat;

namespace {

constexpr std::int64_t kRows = 8192, kCols = 16384;  // 128 Mi weights: 64 MiB at 4 bits, 512 MiB fp32

const std::vector<float>& weights() {
  static const std::vector<float> w = [] {
    std::vector<float> v(static_cast<std::size_t>(kRows * kCols));
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    for (auto& e : v) e = nd(rng);
    return v;
  }();
  return w;
}

const std::vector<float>& xvec() {
  static const std::vector<float> x = [] {
    std::vector<float> v(kCols);
    std::mt19937 rng(2);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& e : v) e = nd(rng);
    return v;
  }();
  return x;
}

const mx::PackedMatrix& packed(const mx::Format& f) {
  static std::map<std::string, std::unique_ptr<mx::PackedMatrix>> cache;
  auto& p = cache[f.name];
  if (!p) {
    cache.clear();  // one format resident at a time
    auto& q = cache[f.name];
    q = std::make_unique<mx::PackedMatrix>(mx::quantize(f, weights().data(), kRows, kCols));
    return *q;
  }
  return *p;
}

int all_threads() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

void setup_threads(benchmark::State& st, int threads) {
  set_num_threads(threads);
  st.counters["threads"] = threads;
}

__attribute__((target("avx2"))) std::uint64_t read_sum(const std::uint8_t* p, std::int64_t n) {
  __m256i a = _mm256_setzero_si256(), b = a;
  std::int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    a = _mm256_add_epi64(a, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    b = _mm256_add_epi64(b, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
  }
  a = _mm256_add_epi64(a, b);
  std::uint64_t s = static_cast<std::uint64_t>(_mm256_extract_epi64(a, 0) + _mm256_extract_epi64(a, 1) + _mm256_extract_epi64(a, 2) +
                                               _mm256_extract_epi64(a, 3));
  for (; i < n; ++i) s += p[i];
  return s;
}

// The memory roof: every byte of a buffer read once (AVX2 loads), split over the threads.
void bm_read(benchmark::State& st, std::int64_t bytes, int threads) {
  setup_threads(st, threads);
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(bytes), 1);
  for (auto _ : st) {
    std::atomic<std::uint64_t> total{0};
    parallel_for(bytes, 1 << 20, [&](std::int64_t b, std::int64_t e) { total += read_sum(buf.data() + b, e - b); });
    benchmark::DoNotOptimize(total.load());
  }
  st.SetBytesProcessed(st.iterations() * bytes);
}

void bm_sgemv(benchmark::State& st, int threads) {
  setup_threads(st, threads);
  const auto& w = weights();
  std::vector<float> y(kRows);
  for (auto _ : st) {
    runtime::gemv_f32(w.data(), kRows, kCols, xvec().data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(st.iterations() * kRows * kCols * 4);
  st.counters["weights_per_s"] = benchmark::Counter(static_cast<double>(st.iterations() * kRows * kCols), benchmark::Counter::kIsRate);
}

// w512: the 512-bit loops where the CPU has AVX-512 (false: the 256-bit AVX2 loops); fixed: their
// block fixed-point activations where the format has them (false: the fp32 loops).
void bm_mx_gemv(benchmark::State& st, const mx::Format& f, mx::Isa isa, int threads, bool w512, bool fixed) {
  setup_threads(st, threads);
  const mx::PackedMatrix& q = packed(f);
  std::vector<float> y(kRows);
  runtime::set_avx512(w512);
  runtime::set_fixed_point_acts(fixed);
  for (auto _ : st) {
    runtime::gemv(runtime::view(q), xvec().data(), y.data(), isa);
    benchmark::DoNotOptimize(y.data());
  }
  runtime::set_avx512(true);
  runtime::set_fixed_point_acts(true);
  st.SetBytesProcessed(st.iterations() * static_cast<std::int64_t>(q.elements.size() + q.scales.size()));
  st.counters["weights_per_s"] = benchmark::Counter(static_cast<double>(st.iterations() * kRows * kCols), benchmark::Counter::kIsRate);
  st.counters["bits_per_weight"] = f.bits + 8.0 / f.block_size;
}

void bm_mx_gemv_q8(benchmark::State& st, const mx::Format& f, int threads, bool w512) {
  setup_threads(st, threads);
  const mx::PackedMatrix& q = packed(f);
  std::vector<float> y(kRows);
  runtime::set_avx512(w512);
  for (auto _ : st) {
    runtime::gemv_q8(runtime::view(q), xvec().data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  runtime::set_avx512(true);
  st.SetBytesProcessed(st.iterations() * static_cast<std::int64_t>(q.elements.size() + q.scales.size()));
  st.counters["weights_per_s"] = benchmark::Counter(static_cast<double>(st.iterations() * kRows * kCols), benchmark::Counter::kIsRate);
  st.counters["bits_per_weight"] = f.bits + 8.0 / f.block_size;
}

const bool registered = [] {
  for (int t : {1, all_threads()}) {
    const std::string ts = "/threads:" + std::to_string(t);
    benchmark::RegisterBenchmark(("read/64MiB" + ts).c_str(), bm_read, std::int64_t{68} << 20, t)->UseRealTime()->MinTime(0.5);
    benchmark::RegisterBenchmark(("read/128MiB" + ts).c_str(), bm_read, std::int64_t{136} << 20, t)->UseRealTime()->MinTime(0.5);
    benchmark::RegisterBenchmark(("sgemv_f32" + ts).c_str(), bm_sgemv, t)->UseRealTime()->MinTime(0.5);
    const bool has512 = runtime::avx512_active();
    for (const auto& f : mx::registry()) {
      benchmark::RegisterBenchmark(("mx_gemv/" + f.name + "/avx2" + ts).c_str(), bm_mx_gemv, f, mx::Isa::Avx2, t, false, false)
          ->UseRealTime()->MinTime(0.5);
      if (has512 && (f.bits == 4 || f.bits == 8)) {  // the formats with a 512-bit loop
        // "avx512": what gemv runs by default (block fixed point for the 4-bit formats, the fp32
        // loops for the 8-bit ones); "avx512_fp32": the 4-bit formats' fp32 loop
        benchmark::RegisterBenchmark(("mx_gemv/" + f.name + "/avx512" + ts).c_str(), bm_mx_gemv, f, mx::Isa::Avx2, t, true, true)
            ->UseRealTime()->MinTime(0.5);
        if (f.bits == 4) {
          benchmark::RegisterBenchmark(("mx_gemv/" + f.name + "/avx512_fp32" + ts).c_str(), bm_mx_gemv, f, mx::Isa::Avx2, t, true, false)
              ->UseRealTime()->MinTime(0.5);
        }
      }
    }
    for (const char* n : {"mxint8", "mxint4", "mxfp4_e2m1"}) {
      benchmark::RegisterBenchmark(("mx_gemv/" + std::string(n) + "/avx2_int8act" + ts).c_str(), bm_mx_gemv_q8, mx::find_format(n), t, false)
          ->UseRealTime()->MinTime(0.5);
      if (has512) {
        benchmark::RegisterBenchmark(("mx_gemv/" + std::string(n) + "/avx512_int8act" + ts).c_str(), bm_mx_gemv_q8, mx::find_format(n), t, true)
            ->UseRealTime()->MinTime(0.5);
      }
    }
    for (const char* n : {"mxint8", "mxfp4_e2m1"}) {
      const mx::Format f = mx::find_format(n);
      benchmark::RegisterBenchmark(("mx_gemv/" + f.name + "/scalar" + ts).c_str(), bm_mx_gemv, f, mx::Isa::Scalar, t, false, false)->UseRealTime()->MinTime(0.5);
    }
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
