#include "mfqat/train/quant_linear.h"

#include <cmath>
#include <stdexcept>

namespace mfqat::train {

namespace {

class MxFakeQuantFn : public torch::autograd::Function<MxFakeQuantFn> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const mx::Format& f,
                               const FakeQuantOptions& opt) {
    if (x.scalar_type() != torch::kFloat32 || !x.device().is_cpu()) {
      throw std::invalid_argument("mx_fake_quant: need a CPU float32 tensor");
    }
    if (x.dim() < 1) throw std::invalid_argument("mx_fake_quant: need at least one dimension");
    const torch::Tensor xc = x.contiguous();
    const std::int64_t cols = x.size(-1);
    const std::int64_t rows = cols == 0 ? 0 : xc.numel() / cols;
    torch::Tensor y = torch::empty_like(xc);
    torch::Tensor sat;
    std::uint8_t* sat_ptr = nullptr;
    if (opt.ste == Ste::Clipped) {
      sat = torch::empty(xc.sizes(), torch::kUInt8);
      sat_ptr = sat.data_ptr<std::uint8_t>();
    }
    mx::QuantOptions q;
    q.rounding = opt.rounding;
    q.seed = opt.seed;
    mx::fake_quantize(f, xc.data_ptr<float>(), rows, cols, y.data_ptr<float>(), q, sat_ptr);
    if (opt.ste == Ste::Clipped) ctx->save_for_backward({sat});
    ctx->saved_data["clipped"] = opt.ste == Ste::Clipped;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    torch::Tensor g = grad[0];
    if (ctx->saved_data["clipped"].toBool()) {
      const torch::Tensor sat = ctx->get_saved_variables()[0];
      g = g.masked_fill(sat.to(torch::kBool), 0.0);
    }
    return {g, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor mx_fake_quant(const torch::Tensor& x, const mx::Format& format, const FakeQuantOptions& opt) {
  return MxFakeQuantFn::apply(x, format, opt);
}

QuantLinearImpl::QuantLinearImpl(std::int64_t in_features, std::int64_t out_features, bool with_bias) {
  weight = register_parameter("weight", torch::empty({out_features, in_features}));
  // Kaiming-uniform as torch::nn::Linear does.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  torch::nn::init::uniform_(weight, -bound, bound);
  if (with_bias) bias = register_parameter("bias", torch::zeros({out_features}));
}

torch::Tensor QuantLinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor w = weight, in = x;
  if (format_) {
    w = mx_fake_quant(weight, *format_, opt_);
    if (quant_input_) in = mx_fake_quant(x, *format_, opt_);
  }
  return torch::nn::functional::linear(in, w, bias.defined() ? bias : torch::Tensor());
}

torch::Tensor QuantLinearImpl::effective_weight() {
  torch::NoGradGuard g;
  return format_ ? mx_fake_quant(weight, *format_, opt_) : weight.clone();
}

}  // namespace mfqat::train
