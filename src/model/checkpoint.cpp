#include "mfqat/model/checkpoint.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

namespace mfqat::model {

namespace {

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string o = "[";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i) o += ',';
    o += std::to_string(s[i]);
  }
  o += ']';
  return o;
}

}  // namespace

ModelConfig read_config(const ckpt::SafetensorsFile& f) {
  const auto it = f.metadata().find(ckpt::kModelConfigKey);
  if (it == f.metadata().end()) throw std::runtime_error(f.name() + ": no model config in the metadata (not an mfqat model checkpoint)");
  return ModelConfig::from_json(it->second, f.name() + " [model_config]");
}

Checkpoint Checkpoint::open(const std::string& path) {
  Checkpoint c;
  c.file_ = ckpt::SafetensorsFile::open(path);
  c.config_ = read_config(c.file_);
  c.params_ = c.config_.params();
  if (const auto it = c.file_.metadata().find(kAnchorKey); it != c.file_.metadata().end()) {
    try {
      c.anchor_ = mx::find_format(it->second);
    } catch (const std::exception& e) {
      throw std::runtime_error(path + ": anchor format: " + e.what());
    }
  }
  auto fail = [&](const std::string& t, const std::string& why) { throw std::runtime_error(path + ": tensor '" + t + "' " + why); };
  for (const Param& p : c.params_) {
    if (c.anchor_ && p.quantized) {
      const ckpt::MxTensorInfo* m = c.file_.find_mx(p.name);
      if (!m) fail(p.name, "is missing (an anchor stores it as an MX tensor)");
      if (m->format.name != c.anchor_->name) fail(p.name, "is " + m->format.name + ", not the anchor format " + c.anchor_->name);
      if (std::vector<std::int64_t>{m->rows, m->cols} != p.shape) {
        fail(p.name, "has shape " + shape_str({m->rows, m->cols}) + ", the config says " + shape_str(p.shape));
      }
      c.anchor_ = m->format;  // carries the block size
      continue;
    }
    const ckpt::TensorInfo* t = c.file_.find(p.name);
    if (!t) fail(p.name, "is missing");
    if (t->dtype != ckpt::DType::F32 || t->shape != p.shape) {
      fail(p.name, std::string("is ") + ckpt::dtype_name(t->dtype) + " " + shape_str(t->shape) + ", the config says F32 " + shape_str(p.shape));
    }
  }
  return c;
}

const Param* Checkpoint::find_param(const std::string& name) const {
  for (const Param& p : params_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::string Checkpoint::derive_refusal(const mx::Format& target) const {
  return anchor_ ? convert::slice_refusal(*anchor_, target) : std::string();
}

mx::PackedMatrix Checkpoint::packed(const Param& p, const mx::Format& target, convert::SliceStats* stats) const {
  if (!p.quantized) throw std::invalid_argument(path() + ": tensor '" + p.name + "' is not a quantized weight");
  if (anchor_) {
    const std::string why = derive_refusal(target);
    if (!why.empty()) throw std::invalid_argument(path() + ": cannot derive " + target.name + " from the anchor: " + why);
    mx::PackedMatrix src = file_.load_mx(*file_.find_mx(p.name));
    if (target.name == anchor_->name) return src;
    return convert::slice(src, target, stats);
  }
  const std::vector<float> w = values(p);
  return mx::quantize(target, w.data(), p.shape[0], p.shape[1]);
}

std::vector<float> Checkpoint::values(const Param& p, const std::optional<mx::Format>& target) const {
  if (anchor_ && p.quantized) return mx::dequantize(packed(p, target.value_or(*anchor_)));
  std::vector<float> v = file_.load_f32(*file_.find(p.name));
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) {
      throw std::runtime_error(path() + ": tensor '" + p.name + "' has a non-finite value (" + std::to_string(v[i]) + ") at element " + std::to_string(i));
    }
  }
  return v;
}

std::vector<std::optional<mx::Format>> select_formats(const std::string& list, const std::optional<mx::Format>& anchor, bool allow_fp32) {
  const int bs = anchor ? anchor->block_size : mx::kDefaultBlockSize;
  std::vector<std::optional<mx::Format>> out;
  std::size_t pos = 0;
  while (pos <= list.size()) {
    std::size_t comma = list.find(',', pos);
    if (comma == std::string::npos) comma = list.size();
    const std::string item = list.substr(pos, comma - pos);
    pos = comma + 1;
    if (item.empty()) continue;
    if (item == "fp32" || item == "none") {
      if (anchor && !allow_fp32) throw std::invalid_argument("an anchor has no fp32 weights ('" + item + "')");
      out.emplace_back(std::nullopt);
      continue;
    }
    const bool family = item == "int" || item == "fp" || item == "all";
    for (const mx::Format& f : mx::parse_format_list(item, bs)) {
      const std::string why = anchor ? convert::slice_refusal(*anchor, f) : std::string();
      if (why.empty()) {
        out.emplace_back(f);
      } else if (!family) {
        throw std::invalid_argument("cannot derive " + f.name + " from the " + anchor->name + " anchor: " + why);
      }
    }
  }
  if (out.empty()) throw std::invalid_argument("no format to use in '" + list + "'");
  return out;
}

ExportStats export_anchor(const Checkpoint& master, const mx::Format& anchor, const std::string& out) {
  if (master.is_anchor()) {
    throw std::invalid_argument(master.path() + ": already an anchor (" + master.anchor_format()->name + "); export needs the fp32 master");
  }
  ExportStats s;
  s.bytes_in = master.file().file_size();
  ckpt::SafetensorsWriter w;
  for (const auto& [k, v] : master.file().metadata()) w.set_metadata(k, v);
  w.set_metadata(kAnchorKey, anchor.name);
  for (const Param& p : master.params()) {
    const std::vector<float> v = master.values(p);  // rejects NaN/Inf, naming the tensor
    if (p.quantized) {
      w.add_mx(p.name, mx::quantize(anchor, v.data(), p.shape[0], p.shape[1]));
      ++s.mx_tensors;
    } else {
      w.add_f32(p.name, p.shape, v);
      ++s.f32_tensors;
    }
  }
  w.write(out);
  s.bytes_out = ckpt::SafetensorsFile::open(out).file_size();
  return s;
}

}  // namespace mfqat::model
