// Fused MX kernels: MX-weight x fp32-activation matrix-vector (decode) and matrix-matrix
// (prefill) products. Weights stay packed; each block of codes is decoded in registers (or a
// 32-float scratch in L1) and multiplied right away, never materialising an fp32 weight matrix.
// A scalar reference for every format, AVX2/FMA paths picked at run time, threads over rows.
// Which loops run: kernel_options.h; the fp32 baselines: blas.h; the loops: src/runtime/kernels/.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "mfqat/mx/packed_view.h"
#include "mfqat/mx/quantize.h"
#include "mfqat/runtime/blas.h"            // gemv_f32, gemm_f32: the fp32 baselines
#include "mfqat/runtime/kernel_options.h"  // KernelOptions, the process-wide switches

namespace mfqat::runtime {

// A packed MX matrix [rows, cols] (blocks along cols), borrowed: mx::PackedView.
using MxView = mx::PackedView;
using mx::view;  // MxView view(const mx::PackedMatrix&)

// y[r] = sum_c W[r, c] * x[c] for r in [0, rows).
//
// Accuracy contract (tested): every fp32 path computes each block's dot product of decoded
// codes and x in fp32 and adds scale * dot to an fp32 row sum; paths differ only in the order of
// the additions, so |y - y_ref| <= 2^-18 * sum_c |W[r,c] x[c]| (tolerance explained in the test).
// The block fixed-point path (4-bit, kernel_options.h) adds its rounding of x, at most
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
// 1e-5 agreement with the trainer holds for the fp32 path only.
bool q8_supported(const mx::Format& f);
void gemv_q8(const MxView& w, const float* x, float* y, mx::Isa isa = mx::Isa::Auto);
void gemv_q8(const MxView& w, const float* x, float* y, const KernelOptions& k);

// ---- the int8 GEMM (n >= 2: prefill, batched decode) ----
// Y = X W^T like gemm, with each activation row rounded per block of 32 to int8 (scale =
// max|x| / 127, nearest even) and each block's dot an exact integer dot of the weights' integer
// codes (value = int * a power of two) and those int8 values, scaled once per block:
//   y[j, r] = sum over blocks b, in order, by fma: float(idot) * ((s_w * mul) * s_x[j, b]).
// Every path (scalar reference, AVX-512 VNNI) gives the same bits, for any thread count.
// Formats: those whose codes are integers in [-128, 127] after one power of two with block size
// 32 (MXINT2..8, MXFP4, MXFP6 E2M3; not MXFP6 E3M2 or MXFP8): gemm_q8_supported(). A NaN or Inf
// in an activation row makes that row's outputs NaN. n = 0 does nothing.
// Error against the fp32 product: |y - W x| <= sum_blocks |s_w| (sum |w|) s_x / 2 + rounding.
bool gemm_q8_supported(const mx::Format& f);
// Whether the options run gemm_q8 for n >= 2 on this CPU: k.int8_gemm, the format supported,
// and the 512-bit VNNI kernel allowed and present, or the AVX2 kernel (vpmaddubsw) for the formats
// whose unsigned codes fit it (all but MXINT8); elsewhere the fp32 gemm runs.
bool gemm_q8_active(const mx::Format& f, const KernelOptions& k);
void gemm_q8(const MxView& w, const float* x, std::int64_t n, float* y, const KernelOptions& k);
// gemm_q8 of several matrices of one format and width sharing X, one quantization of X.
void gemm_q8_shared(std::span<const MxView> ws, const float* x, std::int64_t n, std::span<float* const> ys, const KernelOptions& k);

// ---- the bf16 GEMM (n >= 2) for the formats without integer codes ----
// MXFP8 (E4M3, E5M2) and MXFP6 E3M2: each weight value times its block scale is a bf16 exactly
// (3 significant bits at most), so the kernel multiplies those with the activations rounded once
// to bf16 (nearest even: relative error <= 2^-8 each) in vdpbf16ps (AVX-512 BF16), fp32 sums.
// Weights below 2^-126 after scaling count as 0 (the instruction's denormal handling). Error
// against the fp32 product: |y - W x| <= 2^-8 sum|w x| + fp32 summation. A NaN or Inf in an
// activation row makes that row's outputs NaN. Results do not depend on the thread count or on
// the other rows of the batch. gemm_bf16_supported: the format qualifies; gemm_bf16_active: and
// k.bf16_gemm, the 512-bit loops allowed, and the CPU has AVX512-BF16 (elsewhere the fp32 GEMM).
bool gemm_bf16_supported(const mx::Format& f);
bool gemm_bf16_active(const mx::Format& f, const KernelOptions& k);
// Throws std::invalid_argument where not active.
void gemm_bf16(const MxView& w, const float* x, std::int64_t n, float* y, const KernelOptions& k);

// ---- weights repacked once for the int8 GEMM ----
// The 512-bit kernel multiplies 16-row micro-panels whose codes it first rearranges (16 rows
// interleaved per 4 elements, unsigned bytes, scales as fp32). Done per call, that packing is
// paid once per step whatever the number of activation rows, which dominates small batches (a
// decode step of 2-16 requests). repack_q8 does it once at load: the panels hold every weight
// as a byte (4-bit codes as nibbles, looked up in the kernel) plus one fp32 scale per block
// (1.09x an MXINT8 weight's bytes, 1.18x a 4-bit one's), and gemm_q8 given them reads them
// straight from memory. Same bits as without (the
// same tile code runs on the same bytes). nullptr where the options would not run the 512-bit
// kernel for w's format (then gemm_q8 packs per call as before).
struct Q8Panels;
std::shared_ptr<const Q8Panels> repack_q8(const MxView& w, const KernelOptions& k);
std::uint64_t panel_bytes(const Q8Panels& p);
// gemm_q8 / gemm_q8_shared with panels from repack_q8 of the same matrices; where one of them is
// nullptr, or another kernel runs, every matrix is packed per call. Panels made for another
// matrix shape or format throw std::invalid_argument.
void gemm_q8(const MxView& w, const Q8Panels* panels, const float* x, std::int64_t n, float* y, const KernelOptions& k);
void gemm_q8_shared(std::span<const MxView> ws, std::span<const Q8Panels* const> panels, const float* x, std::int64_t n,
                    std::span<float* const> ys, const KernelOptions& k);

}  // namespace mfqat::runtime
