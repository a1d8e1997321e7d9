// The prefill GEMM against this machine's integer dot-product peak (issue 28).
//
// 1. Peak: vpdpbusd (512-bit, u8 x s8 -> int32, 64 multiply-adds) on 24 independent register
//    accumulators, and the same with the s8 operand broadcast from memory ({1to16}, the form the
//    GEMM uses), at 1..T threads (one per core), in GMAC/s.
// 2. The MX GEMM, Y = X W^T for the synthetic large model's shapes (W [2048 x 2048], [5472 x 2048],
//    [2048 x 5472]) and n = 16, 64, 128, 512 activation rows: the int8 GEMM (gemm_q8: MXINT8,
//    MXFP4), the fp32-activation MX GEMM it replaces (gemm), and OpenBLAS sgemm on fp32 weights,
//    interleaved in every round; medians and ranges over rounds, GMAC/s and the fraction of the
//    measured peak at the same thread count.
// 3. --batch: the decode batches of continuous batching (n = 2..32 rows, W [5472 x 2048]) for
//    every format: the int8 GEMM, the fp32-activation MX GEMM and n GEMVs, ms per call.
//   build/release/bench/gemm_bench [--threads 2] [--rounds 5] [--batch] [--json OUT.jsonl]
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/gemv.h"

using namespace mfqat;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// 24 accumulators: more than latency x throughput of vpdpbusd on any core we know.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) std::int64_t peak_loop(std::int64_t iters, bool from_memory) {
  __m512i acc[24];
  for (int i = 0; i < 24; ++i) acc[i] = _mm512_set1_epi32(i);
  const __m512i a = _mm512_set1_epi8(3);
  volatile std::int32_t mem[16] = {0x01020304};
  const std::int32_t* m = const_cast<const std::int32_t*>(mem);
  if (from_memory) {
    for (std::int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 24
      for (int i = 0; i < 24; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, _mm512_set1_epi32(m[i % 16]));
      __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]));
    }
  } else {
    const __m512i b = _mm512_set1_epi8(5);
    for (std::int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 24
      for (int i = 0; i < 24; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
      __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]));
    }
  }
  __m512i s = acc[0];
  for (int i = 1; i < 24; ++i) s = _mm512_add_epi32(s, acc[i]);
  return _mm512_reduce_add_epi32(s);
}

double peak_gmacs(int threads, bool from_memory) {
  const std::int64_t iters = 20'000'000;
  std::vector<std::thread> ts;
  std::vector<std::int64_t> sink(static_cast<std::size_t>(threads));
  const double t0 = now();
  for (int i = 0; i < threads; ++i) ts.emplace_back([&, i] { sink[static_cast<std::size_t>(i)] = peak_loop(iters, from_memory); });
  for (auto& t : ts) t.join();
  const double dt = now() - t0;
  return static_cast<double>(iters) * 24 * 64 * threads / dt / 1e9;
}

struct Stat {
  double med, lo, hi;
};
Stat stat(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, rounds = 5;
  bool batch = false;
  std::string json, only;  // only: a comma-separated list of formats for --batch (default: all)
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::stoi(argv[++i]);
    else if (a == "--rounds" && i + 1 < argc) rounds = std::stoi(argv[++i]);
    else if (a == "--json" && i + 1 < argc) json = argv[++i];
    else if (a == "--batch") batch = true;
    else if (a == "--formats" && i + 1 < argc) only = argv[++i];
    else {
      std::fprintf(stderr, "gemm_bench: unknown argument '%s' (--threads N --rounds N --json FILE --batch --formats A,B)\n", a.c_str());
      return 2;
    }
  }
  if (!__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx512bw")) {
    std::fprintf(stderr, "gemm_bench: this CPU lacks AVX-512 VNNI; the int8 GEMM falls back to fp32 here, nothing to measure\n");
    return 0;
  }
  FILE* out = json.empty() ? nullptr : std::fopen(json.c_str(), "a");
  if (batch) {
    set_num_threads(threads);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0, 0.02f);
    const std::int64_t rows = 5472, cols = 2048;
    std::vector<float> w(static_cast<std::size_t>(rows * cols));
    for (auto& v : w) v = nd(rng);
    std::printf("decode batches, W %lld x %lld, %d thread(s), %d rounds interleaved: ms per call, median [range]\n", static_cast<long long>(rows),
                static_cast<long long>(cols), threads, rounds);
    std::printf("%-12s %3s %24s %24s %24s %24s\n", "format", "n", "int8 gemm, repacked", "int8 gemm, per-call pack", "fp32-act MX gemm", "n x gemv");
    for (const char* fname : {"mxint8", "mxint7", "mxint6", "mxint5", "mxint4", "mxint3", "mxint2", "mxfp8_e4m3", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4"}) {
      if (!only.empty() && ("," + only + ",").find("," + std::string(fname) + ",") == std::string::npos) continue;
      const mx::Format& f = mx::find_format(fname);
      const mx::PackedMatrix q = mx::quantize(f, w.data(), rows, cols);
      const auto panels = runtime::repack_q8(runtime::view(q), runtime::KernelOptions{});
      for (std::int64_t n : {1, 2, 4, 8, 16, 32}) {
        std::vector<float> x(static_cast<std::size_t>(n * cols)), y(static_cast<std::size_t>(n * rows));
        for (auto& v : x) v = nd(rng) * 50;
        runtime::KernelOptions k8, kf;
        kf.int8_gemm = false;
        auto time = [&](auto&& fn) {
          fn();
          const double t0 = now();
          int reps = 0;
          do {
            fn();
            ++reps;
          } while (now() - t0 < 0.2);
          return 1e3 * (now() - t0) / reps;
        };
        std::vector<double> gp, g8, gf, gv;
        const bool q8 = runtime::gemm_q8_active(f, k8);
        for (int r = 0; r < rounds; ++r) {
          if (panels) gp.push_back(time([&] { runtime::gemm_q8(runtime::view(q), panels.get(), x.data(), n, y.data(), k8); }));
          if (q8) g8.push_back(time([&] { runtime::gemm_q8(runtime::view(q), x.data(), n, y.data(), k8); }));
          gf.push_back(time([&] { runtime::gemm(runtime::view(q), x.data(), n, y.data(), kf); }));
          gv.push_back(time([&] {
            for (std::int64_t i = 0; i < n; ++i) runtime::gemv(runtime::view(q), x.data() + i * cols, y.data() + i * rows, kf);
          }));
        }
        const Stat b = stat(gf), c = stat(gv);
        const Stat a = q8 ? stat(g8) : Stat{0, 0, 0};
        const Stat pp = panels ? stat(gp) : Stat{0, 0, 0};
        std::printf("%-12s %3lld %8.2f [%5.2f,%6.2f]  %8.2f [%5.2f,%6.2f]  %8.2f [%5.2f,%6.2f]  %8.2f [%5.2f,%6.2f]\n", fname, static_cast<long long>(n), pp.med, pp.lo,
                    pp.hi, a.med, a.lo, a.hi, b.med, b.lo, b.hi, c.med, c.lo, c.hi);
        if (out) {
          std::fprintf(out,
                       "{\"kind\":\"batch\",\"threads\":%d,\"rows\":%lld,\"cols\":%lld,\"n\":%lld,\"format\":\"%s\",\"repacked_ms\":%.4f,\"repacked_lo\":%.4f,"
                       "\"repacked_hi\":%.4f,\"int8_ms\":%.4f,\"int8_lo\":%.4f,\"int8_hi\":%.4f,\"fp32act_ms\":%.4f,\"gemv_ms\":%.4f,\"gemv_lo\":%.4f,\"gemv_hi\":%.4f}\n",
                       threads, static_cast<long long>(rows), static_cast<long long>(cols), static_cast<long long>(n), fname, pp.med, pp.lo, pp.hi, a.med, a.lo, a.hi, b.med,
                       c.med, c.lo, c.hi);
        }
      }
    }
    if (out) std::fclose(out);
    return 0;
  }
  std::vector<double> peak(static_cast<std::size_t>(threads) + 1);
  for (int t = 1; t <= threads; ++t) {
    std::vector<double> reg, mem;
    for (int r = 0; r < 3; ++r) {
      reg.push_back(peak_gmacs(t, false));
      mem.push_back(peak_gmacs(t, true));
    }
    const Stat a = stat(reg), b = stat(mem);
    peak[static_cast<std::size_t>(t)] = std::max(a.med, b.med);
    std::printf("vpdpbusd zmm peak, %d thread(s): registers %.1f GMAC/s [%.1f, %.1f], {1to16} from memory %.1f [%.1f, %.1f]\n", t, a.med, a.lo, a.hi, b.med, b.lo,
                b.hi);
    if (out) std::fprintf(out, "{\"kind\":\"peak\",\"threads\":%d,\"registers_gmacs\":%.2f,\"broadcast_gmacs\":%.2f}\n", t, a.med, b.med);
  }
  set_num_threads(threads);
  const double pk = peak[static_cast<std::size_t>(threads)];
  std::printf("\nGEMM, %d thread(s), %d rounds interleaved: GMAC/s median [range], %% of the %.0f GMAC/s peak\n", threads, rounds, pk);
  std::printf("%-14s %5s %-8s %27s %27s %22s %22s\n", "W rows x cols", "n", "format", "int8 gemm, repacked", "int8 gemm, per-call pack", "fp32-act MX gemm", "OpenBLAS sgemm (fp32 W)");
  struct Shape {
    std::int64_t rows, cols;
  };
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0, 0.02f);
  for (const Shape sh : {Shape{2048, 2048}, Shape{5472, 2048}, Shape{2048, 5472}}) {
    std::vector<float> w(static_cast<std::size_t>(sh.rows * sh.cols));
    for (auto& v : w) v = nd(rng);
    for (const char* fname : {"mxint8", "mxfp4"}) {
      const mx::PackedMatrix q = mx::quantize(mx::find_format(fname), w.data(), sh.rows, sh.cols);
      const auto panels = runtime::repack_q8(runtime::view(q), runtime::KernelOptions{});
      for (std::int64_t n : {16, 64, 128, 512}) {
        std::vector<float> x(static_cast<std::size_t>(n * sh.cols)), y(static_cast<std::size_t>(n * sh.rows));
        for (auto& v : x) v = nd(rng) * 50;
        runtime::KernelOptions k8, kf;
        kf.int8_gemm = false;
        std::vector<double> gp, g8, gf, gb;
        const double macs = static_cast<double>(n) * sh.rows * sh.cols;
        auto time = [&](auto&& fn) {
          fn();  // warm
          const double t0 = now();
          int reps = 0;
          do {
            fn();
            ++reps;
          } while (now() - t0 < 0.3);
          return macs * reps / (now() - t0) / 1e9;
        };
        for (int r = 0; r < rounds; ++r) {
          gp.push_back(time([&] { runtime::gemm_q8(runtime::view(q), panels.get(), x.data(), n, y.data(), k8); }));
          g8.push_back(time([&] { runtime::gemm_q8(runtime::view(q), x.data(), n, y.data(), k8); }));
          gf.push_back(time([&] { runtime::gemm(runtime::view(q), x.data(), n, y.data(), kf); }));
          gb.push_back(time([&] { runtime::gemm_f32(w.data(), sh.rows, sh.cols, x.data(), n, y.data()); }));
        }
        const Stat a = stat(g8), b = stat(gf), c = stat(gb), pp = stat(gp);
        std::printf("%5lld x %-6lld %5lld %-8s %7.1f [%5.1f,%5.1f] %3.0f%% %7.1f [%5.1f,%5.1f] %3.0f%% %7.1f [%5.1f,%5.1f]     %7.1f [%5.1f,%5.1f]\n",
                    static_cast<long long>(sh.rows), static_cast<long long>(sh.cols), static_cast<long long>(n), fname, pp.med, pp.lo, pp.hi, 100 * pp.med / pk, a.med,
                    a.lo, a.hi, 100 * a.med / pk, b.med, b.lo, b.hi, c.med, c.lo, c.hi);
        if (out) {
          std::fprintf(out,
                       "{\"kind\":\"gemm\",\"threads\":%d,\"rows\":%lld,\"cols\":%lld,\"n\":%lld,\"format\":\"%s\",\"repacked_gmacs\":%.2f,\"repacked_lo\":%.2f,\"repacked_hi\":%.2f,\"int8_gmacs\":%.2f,\"int8_lo\":%.2f,\"int8_hi\":%.2f,"
                       "\"fp32act_gmacs\":%.2f,\"sgemm_gmacs\":%.2f,\"peak_gmacs\":%.2f,\"fraction_of_peak\":%.3f}\n",
                       threads, static_cast<long long>(sh.rows), static_cast<long long>(sh.cols), static_cast<long long>(n), fname, pp.med, pp.lo, pp.hi, a.med, a.lo, a.hi, b.med, c.med,
                       pk, a.med / pk);
        }
      }
    }
  }
  if (out) std::fclose(out);
  return 0;
}
