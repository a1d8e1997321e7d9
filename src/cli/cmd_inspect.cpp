#include <fmt/core.h>

#include <nlohmann/json.hpp>
#include <cstdio>
#include <cstring>

#include "commands.h"
#include "mfqat/ckpt/safetensors.h"
#include "mfqat/export/gguf.h"
#include "util.h"

namespace mfqat::cli {

namespace {

bool is_gguf(const std::string& path) {
  if (ends_with(path, ".gguf")) return true;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char magic[4] = {};
  const bool yes = std::fread(magic, 1, 4, f) == 4 && std::memcmp(magic, "GGUF", 4) == 0;
  std::fclose(f);
  return yes;
}

int inspect_gguf(const std::string& path, bool json) {
  const gguf::File f = gguf::File::open(path);
  nlohmann::json tensors = nlohmann::json::array(), meta = nlohmann::json::object();
  std::uint64_t total = 0;
  for (const auto& t : f.tensors()) {
    const double n = static_cast<double>(t.numel());
    tensors.push_back({{"name", t.name}, {"type", gguf::info(t.type).name}, {"ne", t.ne}, {"offset", t.offset}, {"bytes", t.bytes},
                       {"bits_per_weight", n > 0 ? 8.0 * static_cast<double>(t.bytes) / n : 0.0}});
    total += t.bytes;
  }
  for (const auto& [k, v] : f.metadata()) meta[k] = v.type == gguf::ValueType::String ? nlohmann::json(v.s) : nlohmann::json(v.to_string());
  if (json) {
    fmt::print("{}\n", nlohmann::json{{"file", path}, {"format", "gguf"}, {"version", f.version()}, {"alignment", f.alignment()},
                                      {"file_bytes", f.file_size()}, {"data_offset", f.data_offset()}, {"tensor_bytes", total},
                                      {"tensors", tensors}, {"metadata", meta}}
                           .dump(2));
    return 0;
  }
  fmt::print("{}: GGUF v{}, {} ({} header), {} tensors, {} metadata keys, alignment {}\n", path, f.version(),
             human_bytes(static_cast<double>(f.file_size())), human_bytes(static_cast<double>(f.data_offset())), f.tensors().size(),
             f.metadata().size(), f.alignment());
  fmt::print("{:<40} {:<8} {:>20} {:>12} {:>6}\n", "tensor", "type", "ne", "bytes", "bpw");
  for (const auto& t : tensors)
    fmt::print("{:<40} {:<8} {:>20} {:>12} {:>6.2f}\n", t["name"].get<std::string>(), t["type"].get<std::string>(), t["ne"].dump(),
               human_bytes(t["bytes"].get<double>()), t["bits_per_weight"].get<double>());
  for (const auto& [k, v] : f.metadata()) fmt::print("metadata {} = {}\n", k, v.to_string());
  return 0;
}

}  // namespace

Command add_inspect(CLI::App& app) {
  auto* sub = app.add_subcommand("inspect", "List the tensors, formats, sizes and metadata of a safetensors or GGUF file");
  struct Opts {
    std::string input;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("file", o->input, ".safetensors or .gguf file")->required();
  sub->add_flag("--json", o->json, "machine-readable output");
  return {sub, [o]() {
    if (is_gguf(o->input)) return inspect_gguf(o->input, o->json);
    const auto in = ckpt::SafetensorsFile::open(o->input);
    nlohmann::json tensors = nlohmann::json::array();
    std::uint64_t total_bytes = 0, weights = 0, mx_bytes = 0;
    for (const auto& m : in.mx_tensors()) {
      const std::uint64_t bytes = (m.elements->end - m.elements->begin) + (m.scales->end - m.scales->begin);
      const std::uint64_t n = static_cast<std::uint64_t>(m.rows * m.cols);
      tensors.push_back({{"name", m.name},
                         {"kind", "mx"},
                         {"format", m.format.name},
                         {"block_size", m.format.block_size},
                         {"shape", {m.rows, m.cols}},
                         {"bytes", bytes},
                         {"bits_per_weight", n ? 8.0 * static_cast<double>(bytes) / static_cast<double>(n) : 0.0},
                         {"rounding", m.rounding}});
      total_bytes += bytes;
      mx_bytes += bytes;
      weights += n;
    }
    for (const auto& t : in.tensors()) {
      if (in.is_mx_part(t)) continue;
      const std::uint64_t bytes = t.end - t.begin;
      tensors.push_back({{"name", t.name},
                         {"kind", "plain"},
                         {"dtype", ckpt::dtype_name(t.dtype)},
                         {"shape", t.shape},
                         {"bytes", bytes},
                         {"bits_per_weight", 8.0 * static_cast<double>(ckpt::dtype_size(t.dtype))}});
      total_bytes += bytes;
    }
    nlohmann::json meta = nlohmann::json::object();
    for (const auto& [k, v] : in.metadata()) {
      if (k.rfind(ckpt::kMxMetaPrefix, 0) != 0) meta[k] = v;
    }
    if (o->json) {
      const nlohmann::json j = {{"file", o->input},        {"file_bytes", in.file_size()},
                                {"header_bytes", in.header_size()}, {"tensor_bytes", total_bytes},
                                {"mx_tensors", in.mx_tensors().size()}, {"mx_weights", weights},
                                {"mx_bits_per_weight", weights ? 8.0 * static_cast<double>(mx_bytes) / static_cast<double>(weights) : 0.0},
                                {"tensors", tensors},      {"metadata", meta}};
      fmt::print("{}\n", j.dump(2));
      return 0;
    }
    fmt::print("{}: {} ({} header), {} tensors ({} MX)\n", o->input, human_bytes(static_cast<double>(in.file_size())),
               human_bytes(static_cast<double>(in.header_size())), tensors.size(), in.mx_tensors().size());
    fmt::print("{:<40} {:<12} {:>20} {:>12} {:>6}\n", "tensor", "format", "shape", "bytes", "bpw");
    for (const auto& t : tensors) {
      const std::string fmtname = t["kind"] == "mx" ? t["format"].get<std::string>() : t["dtype"].get<std::string>();
      fmt::print("{:<40} {:<12} {:>20} {:>12} {:>6.2f}\n", t["name"].get<std::string>(), fmtname, t["shape"].dump(),
                 human_bytes(t["bytes"].get<double>()), t["bits_per_weight"].get<double>());
    }
    if (weights) {
      fmt::print("MX weights: {} in {} ({:.3f} bits per weight)\n", weights, human_bytes(static_cast<double>(mx_bytes)),
                 8.0 * static_cast<double>(mx_bytes) / static_cast<double>(weights));
    }
    for (const auto& [k, v] : meta.items()) fmt::print("metadata {} = {}\n", k, v.get<std::string>());
    return 0;
  }};
}

}  // namespace mfqat::cli
