#include "mfqat/model/checkpoint.h"

#include <cmath>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "mfqat/ckpt/file.h"
#include "mfqat/ckpt/stream_writer.h"

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
  try {
    return ModelConfig::from_json(it->second, f.name() + " [model_config]");
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(ckpt::printable(e.what(), 1000));  // the config text comes from the file
  }
}

namespace {

std::string format_str(const mx::Format& f) { return f.name + " (block size " + std::to_string(f.block_size) + ")"; }

// The block size recorded in the metadata (kAnchorBlockSizeKey), if any: a plain decimal in range.
std::optional<int> metadata_block_size(const ckpt::SafetensorsFile& f) {
  const auto it = f.metadata().find(ckpt::kAnchorBlockSizeKey);
  if (it == f.metadata().end()) return std::nullopt;
  const std::string& v = it->second;
  const bool digits = !v.empty() && v.size() <= 4 && v.find_first_not_of("0123456789") == std::string::npos;
  const int bs = digits ? std::stoi(v) : 0;
  if (bs < 1 || bs > mx::kMaxBlockSize) {
    throw std::runtime_error(f.name() + ": metadata " + ckpt::kAnchorBlockSizeKey + " '" + ckpt::printable(v) + "' is not a block size (1.." +
                             std::to_string(mx::kMaxBlockSize) + ")");
  }
  return bs;
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& path, std::int64_t ctx) {
  if (is_hf_dir(path)) {
    Checkpoint c;
    c.hf_ = HfWeights::open(path, ctx);
    c.config_ = c.hf_->config();
    c.params_ = c.config_.params();
    return c;
  }
  Checkpoint c = from_file(ckpt::SafetensorsFile::open(path));
  if (ctx > 0 && c.config_.kind == Kind::Lm) c.config_.lm.max_seq = ctx;
  return c;
}

std::optional<std::string> Checkpoint::tokenizer_json() const {
  if (hf_) return hf_->tokenizer_json();
  const ckpt::TensorInfo* t = file_.find(kTokenizerTensor);
  if (!t) return std::nullopt;
  if (t->dtype != ckpt::DType::U8 || t->shape.size() != 1) throw std::runtime_error(path() + ": tensor '" + kTokenizerTensor + "' is not 1-D U8 text");
  const auto b = file_.data(*t);
  return std::string(b.begin(), b.end());
}

std::optional<std::string> chat_subset_of_tokenizer_config(const std::string& text) {
  const nlohmann::ordered_json cfg = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!cfg.is_object()) return std::nullopt;
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const char* k : {"chat_template", "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
    const auto it = cfg.find(k);
    if (it != cfg.end() && !it->is_null()) out[k] = *it;
  }
  if (out.empty()) return std::nullopt;
  return out.dump();
}

std::optional<std::string> Checkpoint::tokenizer_config_json() const {
  if (hf_) return hf_->tokenizer_config_json();
  const auto& meta = file_.metadata();
  const auto it = meta.find(kTokenizerConfigKey);
  if (it == meta.end()) return std::nullopt;
  return it->second;
}

Checkpoint Checkpoint::from_file(ckpt::SafetensorsFile file) {
  Checkpoint c;
  c.file_ = std::move(file);
  const std::string& path = c.file_.name();
  c.config_ = read_config(c.file_);
  c.params_ = c.config_.params();
  const auto& meta = c.file_.metadata();
  const auto anchor_it = meta.find(kAnchorKey);
  if (anchor_it != meta.end()) {
    try {
      c.anchor_ = mx::find_format(anchor_it->second);
    } catch (const std::exception& e) {
      throw std::runtime_error(path + ": anchor format: " + ckpt::printable(e.what(), 1000));
    }
  }
  // Names and metadata values come from the file: printable() keeps each message one line.
  auto fail = [&](const std::string& t, const std::string& why) {
    throw std::runtime_error(path + ": tensor '" + ckpt::printable(t) + "' " + ckpt::printable(why, 1000));
  };

  // An anchor's MX tensors must all be in its one format with one block size, and agree with the
  // metadata: mfqat.anchor names the format; the block size is mfqat.anchor_block_size when the
  // file has it, else that of the first quantized weight (in config order), which every other MX
  // tensor must then share. Each refusal names the first tensor that disagrees.
  const std::optional<int> meta_bs = metadata_block_size(c.file_);
  if (meta_bs && !c.anchor_) {
    throw std::runtime_error(path + ": metadata has " + ckpt::kAnchorBlockSizeKey + " but no " + kAnchorKey + " (not an anchor)");
  }
  std::string bs_from;  // where the anchor's block size came from, for messages
  if (c.anchor_ && meta_bs) {
    c.anchor_ = c.anchor_->with_block_size(*meta_bs);
    bs_from = std::string("metadata ") + ckpt::kAnchorBlockSizeKey + " = " + std::to_string(*meta_bs);
  }
  auto check_mx = [&](const ckpt::MxTensorInfo& m) {
    if (m.format.name != c.anchor_->name) {
      fail(m.name, "is " + format_str(m.format) + ", not the anchor format " + c.anchor_->name + " (metadata " + kAnchorKey + ")");
    }
    if (bs_from.empty()) {  // the first MX tensor sets the block size
      c.anchor_ = m.format;
      bs_from = "tensor '" + m.name + "'";
    } else if (m.format.block_size != c.anchor_->block_size) {
      fail(m.name, "is " + format_str(m.format) + ", but the anchor's block size is " + std::to_string(c.anchor_->block_size) +
                       " (" + bs_from + ")");
    }
  };

  for (const Param& p : c.params_) {
    const ckpt::MxTensorInfo* m = c.file_.find_mx(p.name);
    const ckpt::TensorInfo* t = c.file_.find(p.name);
    if (c.anchor_ && p.quantized) {
      if (!m && t) fail(p.name, std::string("is ") + ckpt::dtype_name(t->dtype) + ", but an anchor (" + kAnchorKey + " = " + anchor_it->second + ") stores it as an MX tensor");
      if (!m) fail(p.name, "is missing (an anchor stores it as an MX tensor)");
      check_mx(*m);
      if (std::vector<std::int64_t>{m->rows, m->cols} != p.shape) {
        fail(p.name, "has shape " + shape_str({m->rows, m->cols}) + ", the config says " + shape_str(p.shape));
      }
      continue;
    }
    if (!t && m) {
      fail(p.name, "is an MX tensor (" + format_str(m->format) + "), but " +
                       (c.anchor_ ? std::string("the config does not quantize it") : std::string("the metadata has no ") + kAnchorKey + " (a master stores F32)"));
    }
    if (!t) fail(p.name, "is missing");
    if (t->dtype != ckpt::DType::F32 || t->shape != p.shape) {
      fail(p.name, std::string("is ") + ckpt::dtype_name(t->dtype) + " " + shape_str(t->shape) + ", the config says F32 " + shape_str(p.shape));
    }
  }
  // MX tensors outside the config: an anchor's must still share its format; a master has none.
  for (const ckpt::MxTensorInfo& m : c.file_.mx_tensors()) {
    if (c.find_param(m.name) && c.anchor_) continue;  // checked above
    if (!c.anchor_) fail(m.name, "is an MX tensor (" + format_str(m.format) + "), but the metadata has no " + kAnchorKey + " (a master stores F32)");
    check_mx(m);
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
  if (hf_) return hf_->values(p);
  if (anchor_ && p.quantized) return mx::dequantize(packed(p, target.value_or(*anchor_)));
  const ckpt::TensorInfo& t = *file_.find(p.name);
  std::vector<float> v = file_.load_f32(t);
  file_.release(t);  // copied: its mapped pages need not stay resident (streaming export)
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

namespace {

// Declares the metadata every written checkpoint carries: an mfqat file's own (its config and
// recipe), a Hugging Face directory's config; the tokenizer as a tensor.
void declare_common(const Checkpoint& src, ckpt::SafetensorsStreamWriter& w, const std::optional<std::string>& tok) {
  if (src.hf()) {
    w.set_metadata(ckpt::kModelConfigKey, src.config().to_json());
    if (const auto& tc = src.hf()->tokenizer_config_json()) {
      if (const auto chat = chat_subset_of_tokenizer_config(*tc)) w.set_metadata(kTokenizerConfigKey, *chat);
    }
  } else {
    for (const auto& [k, v] : src.file().metadata()) {
      if (k.rfind(ckpt::kMxMetaPrefix, 0) != 0) w.set_metadata(k, v);
    }
  }
  if (tok) w.declare(kTokenizerTensor, ckpt::DType::U8, {static_cast<std::int64_t>(tok->size())});
}

void write_tokenizer(ckpt::SafetensorsStreamWriter& w, const std::optional<std::string>& tok) {
  if (tok) w.write(kTokenizerTensor, {reinterpret_cast<const std::uint8_t*>(tok->data()), tok->size()});
}

}  // namespace

ExportStats export_anchor(const Checkpoint& master, const mx::Format& anchor, const std::string& out) {
  if (master.is_anchor()) {
    throw std::invalid_argument(master.path() + ": already an anchor (" + master.anchor_format()->name + "); export needs the fp32 master");
  }
  ExportStats s;
  s.bytes_in = master.bytes();
  ckpt::SafetensorsStreamWriter w(out);
  const std::optional<std::string> tok = master.tokenizer_json();
  declare_common(master, w, tok);
  w.set_metadata(kAnchorKey, anchor.name);
  w.set_metadata(ckpt::kAnchorBlockSizeKey, std::to_string(anchor.block_size));
  for (const Param& p : master.params()) {
    if (p.quantized) {
      w.declare_mx(p.name, anchor, p.shape[0], p.shape[1]);
    } else {
      w.declare(p.name, ckpt::DType::F32, p.shape);
    }
  }
  write_tokenizer(w, tok);
  for (const Param& p : master.params()) {
    const std::vector<float> v = master.values(p);  // rejects NaN/Inf, naming the tensor
    if (p.quantized) {
      w.write_mx(p.name, mx::quantize(anchor, v.data(), p.shape[0], p.shape[1]));
      ++s.mx_tensors;
    } else {
      w.write_f32(p.name, v);
      ++s.f32_tensors;
    }
  }
  w.commit();
  s.bytes_out = ckpt::SafetensorsFile::open(out).file_size();
  return s;
}

ExportStats write_master(const Checkpoint& src, const std::string& out) {
  if (src.is_anchor()) throw std::invalid_argument(src.path() + ": an anchor has no fp32 master to write");
  ExportStats s;
  s.bytes_in = src.bytes();
  ckpt::SafetensorsStreamWriter w(out);
  const std::optional<std::string> tok = src.tokenizer_json();
  declare_common(src, w, tok);
  for (const Param& p : src.params()) w.declare(p.name, ckpt::DType::F32, p.shape);
  write_tokenizer(w, tok);
  for (const Param& p : src.params()) {
    w.write_f32(p.name, src.values(p));
    ++s.f32_tensors;
  }
  w.commit();
  s.bytes_out = ckpt::SafetensorsFile::open(out).file_size();
  return s;
}

}  // namespace mfqat::model
