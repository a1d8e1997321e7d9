#include <fmt/core.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "commands.h"
#include "mfqat/hf/tokenizer.h"
#include "mfqat/model/checkpoint.h"
#include "util.h"

namespace mfqat::cli {

Command add_export(CLI::App& app) {
  auto* sub = app.add_subcommand("export", "Write the anchor checkpoint: every quantized weight of an fp32 master in one MX format");
  struct Opts {
    std::string input, output, anchor;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("checkpoint", o->input, "fp32 master checkpoint (from `mfqat train` or `mfqat import`) or a Hugging Face model directory")->required();
  sub->add_option("--anchor", o->anchor, "anchor format: mxint8 (integer family) or mxfp8_e4m3 (FP family); any format is accepted")
      ->required();
  sub->add_option("-o,--output", o->output, "anchor .safetensors to write")->required();
  sub->add_flag("--json", o->json, "machine-readable summary");
  return {sub, [o]() {
    if (!is_safetensors(o->output)) throw std::invalid_argument(o->output + ": output must be .safetensors");
    const mx::Format f = mx::find_format(o->anchor);
    const model::Checkpoint master = model::Checkpoint::open(o->input);
    // the tokenizer travels with the anchor: refuse one the runtime could not load, before writing
    if (const auto tj = master.tokenizer_json()) (void)hf::Tokenizer::from_json(*tj, o->input + " (tokenizer.json)");
    const model::ExportStats s = model::export_anchor(master, f, o->output);
    if (o->json) {
      fmt::print("{}\n", nlohmann::json{{"anchor", f.name},
                                        {"output", o->output},
                                        {"mx_tensors", s.mx_tensors},
                                        {"f32_tensors", s.f32_tensors},
                                        {"bytes_in", s.bytes_in},
                                        {"bytes_out", s.bytes_out}}
                             .dump());
    } else {
      fmt::print("{}: {} anchor, {} MX tensors + {} F32 tensors, {} -> {}\n", o->output, f.name, s.mx_tensors, s.f32_tensors,
                 human_bytes(static_cast<double>(s.bytes_in)), human_bytes(static_cast<double>(s.bytes_out)));
    }
    return 0;
  }};
}

}  // namespace mfqat::cli
