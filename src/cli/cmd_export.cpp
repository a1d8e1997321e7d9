#include <fmt/core.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "commands.h"
#include "mfqat/export/compressed_tensors.h"
#include "mfqat/export/ggml_blocks.h"
#include "mfqat/export/gguf_export.h"
#include "mfqat/hf/tokenizer.h"
#include "mfqat/model/checkpoint.h"
#include "util.h"

namespace mfqat::cli {

Command add_export(CLI::App& app) {
  auto* sub = app.add_subcommand("export",
                                 "Write the anchor checkpoint (every quantized weight of an fp32 master in one MX format), or a "
                                 "GGUF for llama.cpp (--to gguf) with one format's weights re-laid bit for bit");
  struct Opts {
    std::string input, output, anchor, to = "mfqat", format, type, dense = "f32", name;
    bool json = false, allow_f16 = false, no_verify = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("checkpoint", o->input, "fp32 master checkpoint (from `mfqat train` or `mfqat import`) or a Hugging Face model directory")->required();
  sub->add_option("--anchor", o->anchor, "anchor format: mxint8 (integer family) or mxfp8_e4m3 (FP family); any format is accepted");
  sub->add_option("--to", o->to, "mfqat (an MX anchor, the default), gguf (llama.cpp) or compressed-tensors (vLLM: a Hugging Face directory)")
      ->check(CLI::IsMember({"mfqat", "gguf", "compressed-tensors"}));
  sub->add_option("--format", o->format, "gguf, compressed-tensors: the MX format of the quantized linears (derived from an anchor by Slice-and-Scale); gguf also fp32");
  sub->add_option("--gguf-type", o->type, "gguf: the ggml type of the quantized linears (default: mxfp4 for mxfp4_e2m1, q4_0 for mxint2-4, q5_0 for mxint5, q8_0 for mxint6-8 and mxfp6_e2m3)");
  sub->add_flag("--allow-f16", o->allow_f16, "gguf: write a format with no ggml block type (mxfp8, mxfp6_e3m2) as F16 where every value is exact");
  sub->add_option("--dense", o->dense, "gguf: embeddings, norms and an unquantized head as f32, bf16 or f16 (refused unless exact)")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
  sub->add_option("--name", o->name, "gguf: general.name (default: the input's file name)");
  sub->add_flag("--no-verify", o->no_verify, "gguf: skip reading the file back (by default every quantized tensor is checked bit-identical)");
  sub->add_option("-o,--output", o->output, "anchor .safetensors, .gguf, or the compressed-tensors directory, to write")->required();
  sub->add_flag("--json", o->json, "machine-readable summary");
  return {sub, [o]() {
    if (o->to == "gguf") {
      if (!o->anchor.empty()) throw std::invalid_argument("--anchor writes an mfqat anchor; with --to gguf name the weights' --format");
      if (o->format.empty()) throw std::invalid_argument("--to gguf needs --format (an MX format, or fp32)");
      if (!ends_with(o->output, ".gguf"))
        throw std::invalid_argument(o->output + ": output must be .gguf");
      exporter::GgufOptions g;
      if (o->format != "fp32") g.format = mx::find_format(o->format);
      if (!o->type.empty()) {
        g.type = gguf::parse_type(o->type);
        if (!g.type) throw std::invalid_argument("--gguf-type: unknown ggml type '" + o->type + "'");
      }
      g.allow_f16 = o->allow_f16;
      g.dense = *gguf::parse_type(o->dense);
      g.name = o->name;
      g.verify = !o->no_verify;
      const model::Checkpoint ck = model::Checkpoint::open(o->input);
      const exporter::GgufReport r = exporter::export_gguf(ck, g, o->output);
      if (o->json) {
        fmt::print("{}\n", nlohmann::json{{"output", o->output}, {"arch", r.arch}, {"format", o->format}, {"type", gguf::info(r.type).name},
                                          {"quantized_tensors", r.quantized}, {"dense_tensors", r.dense}, {"bytes", r.bytes},
                                          {"verified", r.verified}}
                               .dump());
      } else {
        fmt::print("{}: GGUF ({}), {} tensors {} as {} + {} dense, {}{}\n", o->output, r.arch, r.quantized, o->format, gguf::info(r.type).name,
                   r.dense, human_bytes(static_cast<double>(r.bytes)),
                   g.verify && g.format ? fmt::format("; {} read back bit-identical", r.verified) : std::string());
      }
      return 0;
    }
    if (o->to == "compressed-tensors") {
      if (!o->anchor.empty()) throw std::invalid_argument("--anchor writes an mfqat anchor; with --to compressed-tensors name the weights' --format");
      if (o->format.empty()) throw std::invalid_argument("--to compressed-tensors needs --format (mxfp4)");
      const mx::Format f = mx::find_format(o->format);
      const model::Checkpoint ck = model::Checkpoint::open(o->input);
      const exporter::CtReport r = exporter::export_compressed_tensors(ck, f, o->output);
      if (o->json) {
        fmt::print("{}\n", nlohmann::json{{"output", o->output}, {"format", f.name}, {"quantized_tensors", r.quantized},
                                          {"dense_tensors", r.dense}, {"dense_dtype", r.dense_dtype}, {"bytes", r.bytes}}
                               .dump());
      } else {
        fmt::print("{}: compressed-tensors (mxfp4-pack-quantized), {} linears + {} {} tensors, {}\n", o->output, r.quantized, r.dense,
                   r.dense_dtype, human_bytes(static_cast<double>(r.bytes)));
      }
      return 0;
    }
    if (o->anchor.empty()) throw std::invalid_argument("--anchor is required (or --to gguf|compressed-tensors --format F)");
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
