#include "kernel_flags.h"

#include <stdexcept>

namespace mfqat::cli {

void add_kernel_flags(CLI::App* sub, KernelFlags& f) {
  sub->add_option("--kernels", f.kernels,
                  "GEMV/GEMM loops: auto (the best this CPU has), scalar (the reference), avx2 (256-bit), avx512 (512-bit; an error "
                  "where the CPU lacks AVX-512 VNNI)")
      ->check(CLI::IsMember({"auto", "scalar", "avx2", "avx512"}));
  sub->add_option("--fx-digits", f.fx_digits, "512-bit 4-bit loop: fp32 activations in 3 (~23 bits) or 2 (~15 bits, faster) fixed-point digits")
      ->check(CLI::IsMember({2, 3}));
  sub->add_flag("--no-fixed-point", f.no_fixed_point, "512-bit 4-bit loop: fp32 activations and FMAs instead of fixed point");
  sub->add_flag("--no-vbmi", f.no_vbmi, "512-bit fixed-point loop: vpshufb code lookup instead of vpermb (same bits)");
  sub->add_flag("--int8-act", f.int8_act, "decode with int8 activations where the format allows (MXINT8, 4-bit): faster, not bit-faithful to training");
  sub->add_option("--prefill-acts", f.prefill_acts,
                  "prompts and batches (n >= 2 tokens): int8 (activations rounded to int8 per block of 32, integer dot products, where the "
                  "format's codes are integers and the CPU has AVX-512 VNNI; MXFP8 and MXFP6 E3M2 with bf16 activations where it has "
                  "AVX512-BF16) or fp32 (fp32 activations for every format)")
      ->check(CLI::IsMember({"int8", "fp32"}));
  sub->add_flag("--no-repack", f.no_repack,
                "int8 GEMM: pack the weights per call instead of once at load (saves the panels: 1.09x an MXINT8 weight's bytes, "
                "1.18x a 4-bit one's; slower batches and prompts; the same bits)");
  sub->add_option("--ubatch", f.ubatch, "prefill in chunks of at most N tokens (bounds the activation memory; the same result)")
      ->check(CLI::PositiveNumber);
}

runtime::KernelOptions kernel_options(const KernelFlags& f) {
  runtime::KernelOptions k;
  if (f.kernels == "scalar") {
    k.isa = mx::Isa::Scalar;
  } else if (f.kernels == "avx2") {
    k.isa = mx::Isa::Avx2;
    k.avx512 = false;
  } else if (f.kernels == "avx512") {
    k.isa = mx::Isa::Avx2;
    k.avx512 = true;
  } else if (f.kernels != "auto") {
    throw std::invalid_argument("--kernels: unknown choice '" + f.kernels + "' (auto, scalar, avx2, avx512)");
  }
  k.fx_digits = f.fx_digits;
  k.fixed_point = !f.no_fixed_point;
  k.vbmi = !f.no_vbmi;
  k.int8_acts = f.int8_act;
  k.int8_gemm = f.prefill_acts == "int8";
  k.bf16_gemm = k.int8_gemm;  // int8 where the codes are integers, bf16 (AVX512-BF16) for MXFP8 / MXFP6 E3M2
  k.repack = !f.no_repack;
  k.ubatch = f.ubatch;
  k.validate();
  if (f.kernels == "avx512" && k.describe().rfind("avx512", 0) != 0) {
    throw std::invalid_argument("--kernels avx512: this CPU lacks AVX-512 (F, BW, VL, DQ, VNNI); it runs " + k.describe());
  }
  return k;
}

}  // namespace mfqat::cli
