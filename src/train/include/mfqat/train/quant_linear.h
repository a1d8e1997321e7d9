// MX fake quantization for training: an autograd function whose forward is the mx core's
// fake-quant (blocks of 32 along the last axis) and whose backward is a straight-through
// estimator, and QuantLinear, a linear layer whose weight (and optionally input) format can be
// changed between steps. Includes <torch/torch.h>: keep the number of files that include this
// header small.
#pragma once

#include <torch/torch.h>

#include <optional>

#include "mfqat/mx/quantize.h"

namespace mfqat::train {

enum class Ste : std::uint8_t {
  Plain,    // gradient passes unchanged
  Clipped,  // zero gradient where the element saturated (was clipped to +-max_normal)
};

struct FakeQuantOptions {
  mx::Rounding rounding = mx::Rounding::NearestEven;
  std::uint64_t seed = 0;  // stochastic rounding
  Ste ste = Ste::Plain;
};

// y = fake_quantize(x) in `format`, blocks along the last dimension (any leading shape); CPU
// float32. Differentiable with the chosen straight-through estimator.
torch::Tensor mx_fake_quant(const torch::Tensor& x, const mx::Format& format, const FakeQuantOptions& opt = {});

// A linear layer y = x W^T + b whose weight is fake-quantized (blocks of the format's size along
// in_features) when a format is set; input fake-quant is optional. format = nullopt is fp32.
class QuantLinearImpl : public torch::nn::Module {
 public:
  QuantLinearImpl(std::int64_t in_features, std::int64_t out_features, bool bias = false);

  torch::Tensor forward(const torch::Tensor& x);

  void set_format(std::optional<mx::Format> f) { format_ = std::move(f); }
  const std::optional<mx::Format>& format() const { return format_; }
  void set_options(const FakeQuantOptions& o) { opt_ = o; }
  void set_quantize_input(bool on) { quant_input_ = on; }
  // The weight as the forward uses it (fake-quantized when a format is set), without autograd.
  torch::Tensor effective_weight();

  torch::Tensor weight, bias;

 private:
  std::optional<mx::Format> format_;
  FakeQuantOptions opt_;
  bool quant_input_ = false;
};
TORCH_MODULE(QuantLinear);

}  // namespace mfqat::train
