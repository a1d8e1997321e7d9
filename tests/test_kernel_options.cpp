// Kernel choice is an engine's option, not a process global: what each choice runs on this CPU,
// that two engines with different choices in one process do not affect each other, that the
// process-wide switches of the kernel-level API leave engines alone, and that every choice stays
// within the GEMV accuracy contract of the scalar reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "common.h"
#include "mfqat/runtime/engine.h"
#include "mfqat/runtime/gemv.h"

using namespace mfqat;

namespace {

bool cpu_has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
}

std::vector<int> prompt() { return {'I', 't', ' ', 'i', 's', ' ', 'a', ' ', 't', 'r', 'u', 't', 'h'}; }

std::vector<float> logits(runtime::Engine& e, const std::string& f) {
  runtime::Session s(e, e.weights(f));
  s.feed(prompt());
  return s.feed({'!'});  // a decode step after the prefill
}

}  // namespace

TEST(KernelOptions, DescribeNamesTheLoopsThisCpuRuns) {
  runtime::KernelOptions k;
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool w512 = avx2 && cpu_has_avx512();
  const bool vbmi = w512 && __builtin_cpu_supports("avx512vbmi");
  const std::string bf = w512 && __builtin_cpu_supports("avx512bf16") ? ", bf16 gemm" : "";
  std::printf("default kernels here: %s\n", k.describe().c_str());
  EXPECT_EQ(k.describe(), !avx2 ? "scalar" : !w512 ? "avx2, int8 gemm (not mxint8)" : std::string(vbmi ? "avx512+vbmi" : "avx512") + ", 4-bit fixed point 3 digits, int8 gemm, repacked" + bf);
  k.isa = mx::Isa::Scalar;
  EXPECT_EQ(k.describe(), "scalar");
  k.isa = mx::Isa::Auto;
  k.avx512 = false;
  EXPECT_EQ(k.describe(), avx2 ? "avx2, int8 gemm (not mxint8)" : "scalar");
  k.avx512 = true;
  k.fx_digits = 2;
  k.vbmi = false;
  if (w512) EXPECT_EQ(k.describe(), "avx512, 4-bit fixed point 2 digits, int8 gemm, repacked" + bf);
  k.int8_acts = true;
  if (w512) EXPECT_EQ(k.describe(), "avx512, int8 activations, int8 gemm, repacked" + bf);
  k.repack = false;  // --no-repack
  if (w512) {
    EXPECT_EQ(k.describe(), "avx512, int8 activations, int8 gemm" + bf);
  }
  k.repack = true;
  k.int8_gemm = false;
  if (w512) EXPECT_EQ(k.describe(), "avx512, int8 activations" + bf);
  k.bf16_gemm = false;  // --prefill-acts fp32: both
  if (w512) EXPECT_EQ(k.describe(), "avx512, int8 activations");
  k.fx_digits = 4;
  EXPECT_THROW(k.validate(), std::invalid_argument);
}

TEST(KernelOptions, EnginesKeepTheirOwnChoiceAndIgnoreTheProcessSwitches) {
  auto a = runtime::Engine::synthetic(small_lm(48), mx::find_format("mxfp8_e4m3"), 11);
  auto b = runtime::Engine::synthetic(small_lm(48), mx::find_format("mxfp8_e4m3"), 11);
  runtime::KernelOptions scalar;
  scalar.isa = mx::Isa::Scalar;
  b->set_kernels(scalar);
  runtime::KernelOptions fp32_prefill;  // the prompt's activations in fp32 as well: the fp32 contract below
  fp32_prefill.int8_gemm = false;
  fp32_prefill.bf16_gemm = false;
  a->set_kernels(fp32_prefill);
  const auto la = logits(*a, "mxfp4_e2m1"), lb = logits(*b, "mxfp4_e2m1");
  // each engine alone, in a fresh engine, after the other ran: the same bits
  auto a2 = runtime::Engine::synthetic(small_lm(48), mx::find_format("mxfp8_e4m3"), 11);
  a2->set_kernels(fp32_prefill);
  EXPECT_EQ(logits(*a2, "mxfp4_e2m1"), la);
  EXPECT_EQ(logits(*b, "mxfp4_e2m1"), lb);
  // the kernel-level process switches do not reach an engine
  runtime::set_avx512(false);
  runtime::set_fx_digits(2);
  runtime::set_fixed_point_acts(false);
  EXPECT_EQ(logits(*a2, "mxfp4_e2m1"), la);
  runtime::set_avx512(true);
  runtime::set_fx_digits(3);
  runtime::set_fixed_point_acts(true);
  // different loops, the same model: within the fp32 summation-order and fixed-point bounds
  EXPECT_LT(max_rel(la, lb), 1e-4);
  if (runtime::KernelOptions{}.describe() != "scalar") EXPECT_NE(la, lb) << "the SIMD and scalar loops differ in summation order";
}

TEST(KernelOptions, EveryChoiceAgreesWithTheScalarReference) {
  auto e = runtime::Engine::synthetic(small_lm(48), mx::find_format("mxint8"), 5);
  runtime::KernelOptions ref;
  ref.isa = mx::Isa::Scalar;
  for (const char* f : {"mxint8", "mxint4", "fp32"}) {
    e->set_kernels(ref);
    const auto want = logits(*e, f);
    for (int choice = 0; choice < 6; ++choice) {
      runtime::KernelOptions k;
      k.int8_gemm = choice == 5;  // the prompt in fp32 activations, but for the last choice
      if (choice == 1) k.avx512 = false;
      if (choice == 2) k.fx_digits = 2;
      if (choice == 3) k.fixed_point = false;
      if (choice == 4) k.vbmi = false;
      e->set_kernels(k);
      SCOPED_TRACE(std::string(f) + " " + k.describe());
      // two digits round each activation to ~15 bits of its block maximum (gemv.h); the int8
      // GEMM rounds the prompt's activations to 8 bits of it (measured 1.1e-2 on this random
      // model, whose logits are large; the held-out perplexity cost: docs/numerics.md)
      const bool int8 = std::string(f) != "fp32" && runtime::gemm_q8_active(mx::find_format(f), k);
      EXPECT_LT(max_rel(logits(*e, f), want), int8 ? 3e-2 : k.fx_digits == 2 ? 1e-3 : 1e-4);
    }
  }
}
