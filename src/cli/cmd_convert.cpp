#include <fmt/core.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "commands.h"
#include "mfqat/ckpt/safetensors.h"
#include "mfqat/convert/slice.h"
#include "util.h"

namespace mfqat::cli {

Command add_convert(CLI::App& app) {
  auto* sub = app.add_subcommand("convert", "Slice-and-Scale every MX tensor of a checkpoint to a lower format");
  struct Opts {
    std::string input, output, to;
    bool via_float = false, json = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("input", o->input, "MX checkpoint (.safetensors)")->required();
  sub->add_option("--to", o->to, "target format, same family and lower precision (e.g. mxint4, mxfp4)")->required();
  sub->add_option("-o,--output", o->output, "output .safetensors")->required();
  sub->add_flag("--via-float", o->via_float, "allow any target by dequantize + requantize (not Slice-and-Scale)");
  sub->add_flag("--json", o->json, "machine-readable per-tensor report");
  return {sub, [o]() {
    if (!is_safetensors(o->output)) throw std::invalid_argument(o->output + ": output must be .safetensors");
    const auto in = ckpt::SafetensorsFile::open(o->input);
    if (in.mx_tensors().empty()) throw std::invalid_argument(o->input + ": no MX tensors to convert");
    // Decide every tensor before writing anything.
    for (const auto& m : in.mx_tensors()) {
      const mx::Format dst = mx::find_format(o->to, m.format.block_size);
      const std::string why = convert::slice_refusal(m.format, dst);
      if (!why.empty() && !o->via_float) {
        throw std::invalid_argument(o->input + ": tensor '" + m.name + "': " + why + "; use --via-float to dequantize and requantize");
      }
      if (!why.empty()) {
        fmt::print(stderr, "mfqat: warning: tensor '{}': {} -> {} goes through fp32 (--via-float), not Slice-and-Scale\n",
                   m.name, m.format.name, dst.name);
      }
    }
    ckpt::SafetensorsWriter w;
    w.add_non_mx(in);
    // An anchor stays a (lower-precision) anchor of the same model.
    if (in.metadata().count(ckpt::kAnchorKey)) w.set_metadata(ckpt::kAnchorKey, mx::find_format(o->to).name);
    nlohmann::json report = nlohmann::json::array();
    for (const auto& m : in.mx_tensors()) {
      const mx::Format dst = mx::find_format(o->to, m.format.block_size);
      const mx::PackedMatrix src = in.load_mx(m);
      const auto t0 = std::chrono::steady_clock::now();
      convert::SliceStats st;
      const bool slice = convert::slice_refusal(m.format, dst).empty();
      const mx::PackedMatrix out = slice ? convert::slice(src, dst, &st) : convert::via_float(src, dst);
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      w.add_mx(m.name, out);  // both paths round to nearest-even
      const nlohmann::json row = {{"tensor", m.name},        {"from", m.format.name},
                                  {"to", dst.name},          {"method", slice ? "slice" : "via-float"},
                                  {"rows", m.rows},          {"cols", m.cols},
                                  {"table_blocks", st.table_blocks}, {"requant_blocks", st.requant_blocks},
                                  {"bytes_in", src.elements.size() + src.scales.size()},
                                  {"bytes_out", out.elements.size() + out.scales.size()}, {"ms", ms}};
      report.push_back(row);
      if (!o->json) {
        fmt::print("{:<32} {} -> {} {:<9} {:>12} -> {:>12}  {:.1f} ms  ({} table / {} requant blocks)\n", m.name,
                   m.format.name, dst.name, slice ? "slice" : "via-float",
                   human_bytes(static_cast<double>(src.elements.size() + src.scales.size())),
                   human_bytes(static_cast<double>(out.elements.size() + out.scales.size())), ms, st.table_blocks,
                   st.requant_blocks);
      }
    }
    w.write(o->output);
    if (o->json) fmt::print("{}\n", report.dump(2));
    return 0;
  }};
}

}  // namespace mfqat::cli
