// Which loops the fused MX products run (KernelOptions, one per engine), and the process-wide
// switches that the products' Isa overloads read (for tests and benchmarks).
#pragma once

#include <string>

#include "mfqat/mx/quantize.h"

namespace mfqat::runtime {

// Which loops the products of gemv.h run. Each engine holds one (Engine::set_kernels, the CLI's
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
  // n >= 2 (prefill, batched decode): the int8 GEMM (gemm_q8, activations rounded to int8 per
  // block of 32) where the format has integer codes and the 512-bit VNNI kernel runs here; false
  // (the CLI's --prefill-acts fp32): fp32 activations for every format.
  bool int8_gemm = true;
  // n >= 2 for the formats without integer codes (MXFP8, MXFP6 E3M2): the bf16 GEMM (gemm_bf16,
  // activations rounded to bf16) where the CPU has AVX512-BF16; false (--prefill-acts fp32 turns
  // both off): the fp32-activation GEMM.
  bool bf16_gemm = true;
  // The engine repacks each MX weight once for that GEMM where its 512-bit kernel runs
  // (repack_q8: no per-step packing, so a batch of a few rows costs little more than one; the
  // panels take 1.09x an MXINT8 weight's bytes, 1.18x a 4-bit one's); false (the CLI's
  // --no-repack): packed per call, the same bits.
  bool repack = true;
  // Prefill in chunks of at most this many tokens (the CLI's --ubatch): activation buffers hold
  // ubatch rows, not the whole prompt. Chunking does not change the result: every output row of
  // the products and of attention is computed on its own (session.cpp).
  std::int64_t ubatch = 512;

  // The process-wide switches below (set_avx512, ...), with `isa`: what the Isa overloads run.
  static KernelOptions process_defaults(mx::Isa isa = mx::Isa::Auto);
  // Throws std::invalid_argument naming the bad field (fx_digits not 2 or 3, ubatch < 1, an ISA
  // the CPU lacks).
  void validate() const;
  // The loops these options select on this CPU, e.g. "avx512+vbmi, 4-bit fixed point 3 digits".
  std::string describe() const;
  bool operator==(const KernelOptions&) const = default;
};

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

}  // namespace mfqat::runtime
