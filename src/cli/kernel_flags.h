// The runtime's kernel choice as command-line flags, shared by bench, generate and serve: the
// same flags give the same loops (and so the same logits) wherever the CPU has them.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "mfqat/runtime/gemv.h"

namespace mfqat::cli {

struct KernelFlags {
  std::string kernels = "auto";
  int fx_digits = 3;
  bool no_fixed_point = false;
  bool no_vbmi = false;
  bool int8_act = false;
  std::string prefill_acts = "int8";
  bool no_repack = false;
  std::int64_t ubatch = 512;
};

// Adds --kernels, --fx-digits, --no-fixed-point, --no-vbmi and --int8-act to `sub`.
void add_kernel_flags(CLI::App* sub, KernelFlags& f);

// The options the flags name; throws std::invalid_argument naming the flag when this CPU cannot
// run what it asks for (e.g. --kernels avx512 without AVX-512).
runtime::KernelOptions kernel_options(const KernelFlags& f);

}  // namespace mfqat::cli
