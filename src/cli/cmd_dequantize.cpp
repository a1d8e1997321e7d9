#include <fmt/core.h>

#include <stdexcept>

#include "commands.h"
#include "mfqat/ckpt/npy.h"
#include "mfqat/ckpt/safetensors.h"
#include "util.h"

namespace mfqat::cli {

Command add_dequantize(CLI::App& app) {
  auto* sub = app.add_subcommand("dequantize", "Expand the MX tensors of a checkpoint to float32");
  struct Opts {
    std::string input, output, tensor;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("input", o->input, "MX checkpoint (.safetensors)")->required();
  sub->add_option("-o,--output", o->output, ".safetensors (every tensor) or .npy (one tensor)")->required();
  sub->add_option("--tensor", o->tensor, "with .npy output: which tensor (default: the only MX tensor)");
  return {sub, [o]() {
    const auto in = ckpt::SafetensorsFile::open(o->input);
    if (is_npy(o->output)) {
      const ckpt::MxTensorInfo* m = nullptr;
      if (!o->tensor.empty()) {
        m = in.find_mx(o->tensor);
        if (!m) throw std::invalid_argument(o->input + ": no MX tensor '" + o->tensor + "'");
      } else if (in.mx_tensors().size() == 1) {
        m = &in.mx_tensors()[0];
      } else {
        throw std::invalid_argument(o->input + ": " + std::to_string(in.mx_tensors().size()) +
                                    " MX tensors; pick one with --tensor NAME for .npy output");
      }
      ckpt::Matrix out;
      out.rows = m->rows;
      out.cols = m->cols;
      out.data = mx::dequantize(in.load_mx(*m));
      ckpt::write_npy(o->output, out);
      return 0;
    }
    if (!is_safetensors(o->output)) throw std::invalid_argument(o->output + ": output must be .safetensors or .npy");
    ckpt::SafetensorsWriter w;
    w.add_non_mx(in);
    for (const auto& m : in.mx_tensors()) {
      const std::vector<float> v = mx::dequantize(in.load_mx(m));
      w.add_f32(m.name, {m.rows, m.cols}, v);
    }
    w.write(o->output);
    return 0;
  }};
}

}  // namespace mfqat::cli
