// GGUF writer: header first (every tensor declared), then the tensors streamed one at a time
// through the atomic writer, each at an aligned offset.
#include <cstring>
#include <stdexcept>

#include "mfqat/export/gguf.h"

namespace mfqat::gguf {

namespace {

void put(std::vector<std::uint8_t>& b, std::uint64_t v, int n) {
  for (int k = 0; k < n; ++k) b.push_back(static_cast<std::uint8_t>(v >> (8 * k)));
}
void put_string(std::vector<std::uint8_t>& b, const std::string& s) {
  put(b, s.size(), 8);
  b.insert(b.end(), s.begin(), s.end());
}
void put_value(std::vector<std::uint8_t>& b, const Value& v, bool with_type) {
  if (with_type) put(b, static_cast<std::uint32_t>(v.type), 4);
  switch (v.type) {
    case ValueType::U8: put(b, v.u, 1); break;
    case ValueType::U16: put(b, v.u, 2); break;
    case ValueType::U32: put(b, v.u, 4); break;
    case ValueType::U64: put(b, v.u, 8); break;
    case ValueType::I8: case ValueType::Bool: put(b, static_cast<std::uint64_t>(v.i), 1); break;
    case ValueType::I16: put(b, static_cast<std::uint64_t>(v.i), 2); break;
    case ValueType::I32: put(b, static_cast<std::uint64_t>(v.i), 4); break;
    case ValueType::I64: put(b, static_cast<std::uint64_t>(v.i), 8); break;
    case ValueType::F32: {
      const auto f = static_cast<float>(v.f);
      std::uint32_t u;
      std::memcpy(&u, &f, 4);
      put(b, u, 4);
      break;
    }
    case ValueType::F64: {
      std::uint64_t u;
      std::memcpy(&u, &v.f, 8);
      put(b, u, 8);
      break;
    }
    case ValueType::String: put_string(b, v.s); break;
    case ValueType::Array:
      if (v.elem == ValueType::Array) throw std::invalid_argument("GGUF writer: nested arrays are not supported");
      put(b, static_cast<std::uint32_t>(v.elem), 4);
      put(b, v.arr.size(), 8);
      for (const Value& e : v.arr) {
        if (e.type != v.elem) throw std::invalid_argument("GGUF writer: an array mixes element types");
        put_value(b, e, false);
      }
      break;
  }
}

}  // namespace

Writer::Writer(std::string path, std::uint32_t alignment) : path_(std::move(path)), alignment_(alignment) {
  if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0) throw std::invalid_argument("GGUF writer: alignment must be a power of two");
  if (alignment_ != kDefaultAlignment) set("general.alignment", Value::u32(alignment_));
}

void Writer::set(const std::string& key, Value v) {
  if (out_) throw std::logic_error("GGUF writer: metadata '" + key + "' set after the first tensor was written");
  for (const auto& kv : kv_)
    if (kv.first == key) throw std::logic_error("GGUF writer: metadata '" + key + "' set twice");
  kv_.emplace_back(key, std::move(v));
}

void Writer::declare(const std::string& name, GgmlType type, std::vector<std::int64_t> ne) {
  if (out_) throw std::logic_error("GGUF writer: tensor '" + name + "' declared after the first tensor was written");
  const TypeInfo& ti = info(type);
  if (ne.empty() || ne.size() > 4) throw std::invalid_argument("GGUF writer: tensor '" + name + "' has " + std::to_string(ne.size()) + " dimensions");
  if (ne[0] % ti.block != 0)
    throw std::invalid_argument("GGUF writer: tensor '" + name + "': rows of " + std::to_string(ne[0]) + " are not whole " + ti.name + " blocks");
  for (const auto& t : tensors_)
    if (t.name == name) throw std::logic_error("GGUF writer: tensor '" + name + "' declared twice");
  TensorInfo t;
  t.name = name;
  t.type = type;
  t.ne = std::move(ne);
  t.bytes = static_cast<std::uint64_t>(t.numel() / ti.block) * ti.bytes;
  std::uint64_t off = 0;
  if (!tensors_.empty()) {
    const TensorInfo& last = tensors_.back();
    off = (last.offset + last.bytes + alignment_ - 1) / alignment_ * alignment_;
  }
  t.offset = off;
  tensors_.push_back(std::move(t));
}

void Writer::start() {
  std::vector<std::uint8_t> h;
  h.insert(h.end(), {'G', 'G', 'U', 'F'});
  put(h, 3, 4);
  put(h, tensors_.size(), 8);
  put(h, kv_.size(), 8);
  for (const auto& [k, v] : kv_) {
    put_string(h, k);
    put_value(h, v, true);
  }
  for (const TensorInfo& t : tensors_) {
    put_string(h, t.name);
    put(h, t.ne.size(), 4);
    for (auto n : t.ne) put(h, static_cast<std::uint64_t>(n), 8);
    put(h, static_cast<std::uint32_t>(t.type), 4);
    put(h, t.offset, 8);
  }
  h.resize((h.size() + alignment_ - 1) / alignment_ * alignment_, 0);
  out_ = std::make_unique<ckpt::AtomicWriter>(path_);
  out_->write(h.data(), h.size());
  data_start_ = pos_ = h.size();
}

void Writer::write(const std::string& name, std::span<const std::uint8_t> bytes) {
  if (!out_) start();
  if (next_ >= tensors_.size()) throw std::logic_error("GGUF writer: tensor '" + name + "' was not declared");
  const TensorInfo& t = tensors_[next_];
  if (t.name != name) throw std::logic_error("GGUF writer: tensor '" + name + "' written where '" + t.name + "' was declared");
  if (bytes.size() != t.bytes)
    throw std::logic_error("GGUF writer: tensor '" + name + "': " + std::to_string(bytes.size()) + " bytes, declared " + std::to_string(t.bytes));
  static const std::uint8_t zeros[256] = {};
  while (pos_ < data_start_ + t.offset) {
    const std::uint64_t n = std::min<std::uint64_t>(sizeof zeros, data_start_ + t.offset - pos_);
    out_->write(zeros, n);
    pos_ += n;
  }
  out_->write(bytes.data(), bytes.size());
  pos_ += bytes.size();
  ++next_;
}

void Writer::commit() {
  if (!out_) start();
  if (next_ != tensors_.size()) throw std::logic_error("GGUF writer: tensor '" + tensors_[next_].name + "' was declared but not written");
  out_->commit();
}

}  // namespace mfqat::gguf
