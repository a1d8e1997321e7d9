// MX GEMV throughput in GB/s of weight bytes (packed elements + scales) for every registry format,
// on a matrix far beyond the last-level cache (8192 x 16384; the 512-bit paths also at 24528 x
// 5472, the width of an FFN down-projection), against in the same run: a plain read of the
// matrix's own bytes timed right after every GEMV call (of_read = GEMV GB/s / read GB/s), a read of
// a buffer of the same size class, and fp32 GEMV (OpenBLAS cblas_sgemv) on the same matrix
// shape. Scalar reference paths for two formats show what the fused SIMD decode buys.
//   build/release/bench/gemv_bench --benchmark_format=json > bench/results/gemv_bench.json
//   python3 scripts/gemv_table.py bench/results/gemv_bench.json
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <immintrin.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/gemv.h"

using namespace mfqat;

namespace {

constexpr std::int64_t kRows = 8192, kCols = 16384;  // 128 Mi weights: 64 MiB at 4 bits, 512 MiB fp32
// The second shape: rows as wide as the synthetic large model's FFN (W2 reads 5472 columns), as
// many weights
constexpr std::int64_t kRowsB = 24528, kColsB = 5472;
// and 65536 x 2048: the width of the synthetic large model's Q/K/V/O and W1/W3 (1 KiB rows at 4 bits)
constexpr std::int64_t kRowsC = 65536, kColsC = 2048;

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

const mx::PackedMatrix& packed(const mx::Format& f, std::int64_t rows, std::int64_t cols) {
  static std::map<std::string, std::unique_ptr<mx::PackedMatrix>> cache;
  const std::string key = f.name + "/" + std::to_string(cols);
  auto& p = cache[key];
  if (!p) {
    cache.clear();  // one matrix resident at a time
    auto& q = cache[key];
    q = std::make_unique<mx::PackedMatrix>(mx::quantize(f, weights().data(), rows, cols));  // the first rows*cols weights
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

// Every byte of [p, p + n) read once (AVX2 loads), split over the threads like a GEMV's rows.
std::uint64_t read_all(const std::uint8_t* p, std::int64_t n) {
  std::atomic<std::uint64_t> total{0};
  parallel_for(n, 1 << 20, [&](std::int64_t b, std::int64_t e) { total += read_sum(p + b, e - b); });
  return total.load();
}

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Times `gemv` per iteration (manual time) and, after each, a plain read of the matrix's own
// bytes: the roof each GEMV is compared with, measured in the same seconds of the run (this VM's
// bandwidth drifts by 2x within minutes, so a roof taken once at the start misleads).
template <class Gemv>
void time_against_read(benchmark::State& st, const mx::PackedMatrix& q, Gemv&& gemv) {
  const auto bytes = static_cast<std::int64_t>(q.elements.size() + q.scales.size());
  double read_s = 0, gemv_s = 0;
  for (auto _ : st) {
    const double t0 = now_s();
    gemv();
    const double t1 = now_s();
    benchmark::DoNotOptimize(read_all(q.elements.data(), static_cast<std::int64_t>(q.elements.size())) +
                             read_all(q.scales.data(), static_cast<std::int64_t>(q.scales.size())));
    read_s += now_s() - t1;
    gemv_s += t1 - t0;
    st.SetIterationTime(t1 - t0);
  }
  const double n = static_cast<double>(st.iterations()) * static_cast<double>(bytes);
  st.SetBytesProcessed(st.iterations() * bytes);
  st.counters["read_same_bytes_per_s"] = n / read_s;
  st.counters["of_read"] = read_s / gemv_s;  // GEMV bytes/s over read bytes/s
}

// The memory roof: every byte of a buffer read once (AVX2 loads), split over the threads.
void bm_read(benchmark::State& st, std::int64_t bytes, int threads) {
  setup_threads(st, threads);
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(bytes), 1);
  for (auto _ : st) benchmark::DoNotOptimize(read_all(buf.data(), bytes));
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
// block fixed-point activations where the format has them (false: the fp32 loops); vbmi: the
// fixed-point loop's vpermb lookup where the CPU has VBMI (false: vpshufb); digits: its
// activation digits (3, the default, or 2).
void bm_mx_gemv(benchmark::State& st, const mx::Format& f, mx::Isa isa, int threads, bool w512, bool fixed, bool vbmi, std::int64_t rows,
                std::int64_t cols, int digits) {
  setup_threads(st, threads);
  const mx::PackedMatrix& q = packed(f, rows, cols);
  std::vector<float> y(static_cast<std::size_t>(rows));
  runtime::set_avx512(w512);
  runtime::set_fixed_point_acts(fixed);
  runtime::set_vbmi(vbmi);
  runtime::set_fx_digits(digits);
  time_against_read(st, q, [&] {
    runtime::gemv(runtime::view(q), xvec().data(), y.data(), isa);
    benchmark::DoNotOptimize(y.data());
  });
  runtime::set_avx512(true);
  runtime::set_fixed_point_acts(true);
  runtime::set_vbmi(true);
  runtime::set_fx_digits(3);
  st.counters["weights_per_s"] = benchmark::Counter(static_cast<double>(st.iterations() * rows * cols), benchmark::Counter::kIsRate);
  st.counters["bits_per_weight"] = f.bits + 8.0 / f.block_size;
}

void bm_mx_gemv_q8(benchmark::State& st, const mx::Format& f, int threads, bool w512, std::int64_t rows, std::int64_t cols) {
  setup_threads(st, threads);
  const mx::PackedMatrix& q = packed(f, rows, cols);
  std::vector<float> y(static_cast<std::size_t>(rows));
  runtime::set_avx512(w512);
  time_against_read(st, q, [&] {
    runtime::gemv_q8(runtime::view(q), xvec().data(), y.data());
    benchmark::DoNotOptimize(y.data());
  });
  runtime::set_avx512(true);
  st.counters["weights_per_s"] = benchmark::Counter(static_cast<double>(st.iterations() * rows * cols), benchmark::Counter::kIsRate);
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
      benchmark::RegisterBenchmark(("mx_gemv/" + f.name + "/avx2" + ts).c_str(), bm_mx_gemv, f, mx::Isa::Avx2, t, false, false, true, kRows, kCols, 3)
          ->UseManualTime()->MinTime(0.5);
      if (has512 && (f.bits == 4 || f.bits == 8)) {  // the formats with a 512-bit loop
        // "avx512": what gemv runs by default (block fixed point for the 4-bit formats, the fp32
        // loops for the 8-bit ones); "avx512_fp32": the 4-bit formats' fp32 loop
        benchmark::RegisterBenchmark(("mx_gemv/" + f.name + "/avx512" + ts).c_str(), bm_mx_gemv, f, mx::Isa::Avx2, t, true, true, true, kRows, kCols, 3)
            ->UseManualTime()->MinTime(0.5);
        if (f.bits == 4 && runtime::vbmi_active()) {  // the fixed-point loop's vpshufb lookup
          benchmark::RegisterBenchmark(("mx_gemv/" + f.name + "/avx512_pshufb" + ts).c_str(), bm_mx_gemv, f, mx::Isa::Avx2, t, true, true, false, kRows, kCols, 3)
              ->UseManualTime()->MinTime(0.5);
        }
        if (f.bits == 4) {  // the fixed-point loop with two activation digits (MFQAT_FX_DIGITS=2)
          benchmark::RegisterBenchmark(("mx_gemv/" + f.name + "/avx512_2digits" + ts).c_str(), bm_mx_gemv, f, mx::Isa::Avx2, t, true, true, true, kRows, kCols, 2)
              ->UseManualTime()->MinTime(0.5);
          benchmark::RegisterBenchmark(("mx_gemv/" + f.name + "/avx512_fp32" + ts).c_str(), bm_mx_gemv, f, mx::Isa::Avx2, t, true, false, true, kRows, kCols, 3)
              ->UseManualTime()->MinTime(0.5);
        }
      }
    }
    for (const char* n : {"mxint8", "mxint4", "mxfp4_e2m1"}) {
      benchmark::RegisterBenchmark(("mx_gemv/" + std::string(n) + "/avx2_int8act" + ts).c_str(), bm_mx_gemv_q8, mx::find_format(n), t, false, kRows, kCols)
          ->UseManualTime()->MinTime(0.5);
      if (has512) {
        benchmark::RegisterBenchmark(("mx_gemv/" + std::string(n) + "/avx512_int8act" + ts).c_str(), bm_mx_gemv_q8, mx::find_format(n), t, true, kRows, kCols)
            ->UseManualTime()->MinTime(0.5);
      }
    }
    // the second shape: the default path of the formats with 512-bit loops, and int8 activations
    for (const auto& f : mx::registry()) {
      if (!has512 || (f.bits != 4 && f.bits != 8)) continue;
      benchmark::RegisterBenchmark(("mx_gemv_5472/" + f.name + "/avx512" + ts).c_str(), bm_mx_gemv, f, mx::Isa::Avx2, t, true, true, true, kRowsB, kColsB, 3)
          ->UseManualTime()->MinTime(0.5);
      if (f.bits == 4 && runtime::vbmi_active()) {
        benchmark::RegisterBenchmark(("mx_gemv_5472/" + f.name + "/avx512_pshufb" + ts).c_str(), bm_mx_gemv, f, mx::Isa::Avx2, t, true, true, false, kRowsB, kColsB, 3)
            ->UseManualTime()->MinTime(0.5);
      }
      if (f.bits == 4) {
        benchmark::RegisterBenchmark(("mx_gemv_5472/" + f.name + "/avx512_2digits" + ts).c_str(), bm_mx_gemv, f, mx::Isa::Avx2, t, true, true, true, kRowsB, kColsB, 2)
            ->UseManualTime()->MinTime(0.5);
      }
      if (runtime::q8_supported(f)) {
        benchmark::RegisterBenchmark(("mx_gemv_5472/" + f.name + "/avx512_int8act" + ts).c_str(), bm_mx_gemv_q8, f, t, true, kRowsB, kColsB)
            ->UseManualTime()->MinTime(0.5);
      }
    }
    // the third shape: the default path of the target formats
    for (const char* n : {"mxint8", "mxfp8_e4m3", "mxint4", "mxfp4_e2m1"}) {
      if (!has512) break;
      const mx::Format f = mx::find_format(n);
      benchmark::RegisterBenchmark(("mx_gemv_2048/" + f.name + "/avx512" + ts).c_str(), bm_mx_gemv, f, mx::Isa::Avx2, t, true, true, true, kRowsC, kColsC, 3)
          ->UseManualTime()->MinTime(0.5);
    }
    for (const char* n : {"mxint8", "mxfp4_e2m1"}) {
      const mx::Format f = mx::find_format(n);
      benchmark::RegisterBenchmark(("mx_gemv/" + f.name + "/scalar" + ts).c_str(), bm_mx_gemv, f, mx::Isa::Scalar, t, false, false, true, kRows, kCols, 3)->UseManualTime()->MinTime(0.5);
    }
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
