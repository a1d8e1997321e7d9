// Fused MX kernels: MX-weight x fp32-activation matrix-vector (decode) and matrix-matrix
// (prefill) products. Weights stay packed; each block of codes is decoded in registers (or a
// 32-float scratch in L1) and multiplied right away, never materialising an fp32 weight matrix.
// A scalar reference for every format, AVX2/FMA paths picked at run time, threads over rows.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "mfqat/mx/quantize.h"

namespace mfqat::runtime {

// A packed MX matrix [rows, cols] (blocks along cols), borrowed.
struct MxView {
  const mx::Format* format = nullptr;
  const std::uint8_t* elements = nullptr;  // rows * format->packed_row_bytes(cols)
  const std::uint8_t* scales = nullptr;    // rows * format->blocks_per_row(cols)
  std::int64_t rows = 0, cols = 0;
};
MxView view(const mx::PackedMatrix& m);

// Which loops the products below run. Each engine holds one (Engine::set_kernels, the CLI's
// --kernels/--fx-digits/--no-fixed-point/--no-vbmi/--int8-act) and passes it to every product:
// nothing is read from the environment, and `describe` names the loops actually taken on this
// CPU (recorded by `bench --json` and the server's /v1/formats). Which choices give the same
// bits as which: docs/numerics.md.
struct KernelOptions {
  // Scalar: the reference loops only. Avx2: the SIMD loops (and 512-bit ones where allowed
  // below). Auto: Avx2 where the CPU has AVX2+FMA, else Scalar.
  mx::Isa isa = mx::Isa::Auto;
  bool avx512 = true;       // 512-bit loops where the CPU has AVX-512 F/BW/VL/DQ/VNNI
  bool fixed_point = true;  // 4-bit formats: fp32 activations in block fixed point (512-bit)
  int fx_digits = 3;        // that loop's activation digits: 3 (~23 bits) or 2 (~15 bits)
  bool vbmi = true;         // that loop's code lookup with vpermb where the CPU has AVX512-VBMI
  bool int8_acts = false;   // engine decode: gemv_q8 (int8 activations) where the format has it

  // The process-wide switches below (set_avx512, ...), with `isa`: what the Isa overloads run.
  static KernelOptions process_defaults(mx::Isa isa = mx::Isa::Auto);
  // Throws std::invalid_argument naming the bad field (fx_digits not 2 or 3, an ISA the CPU lacks).
  void validate() const;
  // The loops these options select on this CPU, e.g. "avx512+vbmi, 4-bit fixed point 3 digits".
  std::string describe() const;
  bool operator==(const KernelOptions&) const = default;
};

// y[r] = sum_c W[r, c] * x[c] for r in [0, rows).
//
// Accuracy contract (tested): every fp32 path computes each block's dot product of decoded
// codes and x in fp32 and adds scale * dot to an fp32 row sum; paths differ only in the order of
// the additions, so |y - y_ref| <= 2^-18 * sum_c |W[r,c] x[c]| (tolerance explained in the test).
// The block fixed-point path (4-bit, below) adds its rounding of x, at most
// sum_c |W[r,c]| * 2^-(K+1) * max|x| over c's block of 32 (K = 21 with the default three
// digits, 13 with two).
void gemv(const MxView& w, const float* x, float* y, mx::Isa isa = mx::Isa::Auto);
void gemv(const MxView& w, const float* x, float* y, const KernelOptions& k);

// gemv of several matrices of one format and width that share x (decode's Q, K, V; W1, W3):
// ys[i] = W_i x, each bit for bit what gemv gives, with one preparation of x and one parallel
// region over all their rows instead of one each. Throws std::invalid_argument when the formats
// or widths differ or the counts do not match.
void gemv_shared(std::span<const MxView> ws, const float* x, std::span<float* const> ys, mx::Isa isa = mx::Isa::Auto);
void gemv_shared(std::span<const MxView> ws, const float* x, std::span<float* const> ys, const KernelOptions& k);

// Y[i, r] = sum_c W[r, c] * X[i, c] for i in [0, n): X is [n, cols] row-major, Y is [n, rows].
// Decodes each block once for all n rows.
void gemm(const MxView& w, const float* x, std::int64_t n, float* y, mx::Isa isa = mx::Isa::Auto);
void gemm(const MxView& w, const float* x, std::int64_t n, float* y, const KernelOptions& k);

// ---- int8 activations (opt-in; ggml's Q8 idea) ----
// x is quantized per block of the weight's block size to int8 (scale = amax / 127, nearest
// even), and each block's dot product is an exact integer dot of int8 weight values and int8
// activations (vpmaddubsw / vpmaddwd on AVX2), times weight scale x activation scale. Formats:
// MXINT8 and every 4-bit format with an int8 shuffle table (MXINT4, MXFP4, ...): q8_supported().
// Error (tested): |y - W x| <= sum_blocks |s_w| * (sum |w_int|) * s_x / 2 + the fp32 summation
// bound, i.e. the activation rounding, which the fp32 path does not have: the runtime's
// 1e-4 agreement with the trainer holds for the fp32 path only.
bool q8_supported(const mx::Format& f);
void gemv_q8(const MxView& w, const float* x, float* y, mx::Isa isa = mx::Isa::Auto);
void gemv_q8(const MxView& w, const float* x, float* y, const KernelOptions& k);

// On CPUs with AVX-512 (F, BW, VL, DQ, VNNI) the AVX2 paths of gemv (4-bit, 8-bit INT and FP8
// formats) and gemv_q8 run 512-bit loops instead, chosen at run time (same accuracy contracts).
// set_avx512(false) keeps the 256-bit loops for the Isa overloads (tests check both; benchmarks
// measure both); avx512_active() says whether they run them. An engine has its own KernelOptions.
bool avx512_active();
void set_avx512(bool allowed);

// Block fixed point (AVX-512, one vector, the 4-bit formats with an int8 table: MXFP4, MXINT4,
// ...): their weights are small integers times a power of two, so gemv rounds each block of 32
// activations to integers X = round(x * 2^t) against the block's largest |x| and computes each
// block's dot exactly in integers (8-bit digits of X against the 4-bit values, vpdpbusd): 2-3x
// fewer instructions per weight than decoding to fp32 and multiplying. Three digits by default:
// |X| < 2^23, each x moves by at most 2^-22 of its block's largest |x| (fp32 keeps 24 bits per
// element). Two digits (KernelOptions::fx_digits, set_fx_digits(2)): |X| <= 32639, at most
// 2^-14 (2^-15 for most blocks; finer than an fp16 or bf16 activation), a third fewer integer
// products (faster where the loop is compute-bound: docs/perf.md). Any non-finite x, or a nonzero block whose largest |x| is below 2^-100, takes
// the fp32 loop.
// MXINT8 keeps its fp32 loop (measured faster: docs/perf.md). set_fixed_point_acts(false)
// keeps the fp32 loops (tests check both; benchmarks measure both).
bool fixed_point_acts();
void set_fixed_point_acts(bool allowed);
int fx_digits();
void set_fx_digits(int digits);  // 2 or 3; anything else throws std::invalid_argument
// Where the CPU also has AVX512-VBMI, the fixed-point loop looks the 4-bit codes up with vpermb
// instead of vpshufb (two instructions fewer per 64 bytes of codes; the same bits).
// set_vbmi(false) keeps vpshufb; vbmi_active() says which one runs.
bool vbmi_active();
void set_vbmi(bool allowed);

// fp32 baselines: OpenBLAS cblas_sgemv / cblas_sgemm with W [rows, cols] row-major, the rows
// split over the mfqat thread pool like the MX kernels (OpenBLAS single-threaded in each part:
// its own threads would keep spinning after the call and take cores from the next MX kernel).
void gemv_f32(const float* w, std::int64_t rows, std::int64_t cols, const float* x, float* y);
void gemm_f32(const float* w, std::int64_t rows, std::int64_t cols, const float* x, std::int64_t n, float* y);

}  // namespace mfqat::runtime
