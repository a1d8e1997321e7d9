#include "mfqat/ckpt/stream_writer.h"

#include <stdexcept>

namespace mfqat::ckpt {

SafetensorsStreamWriter::SafetensorsStreamWriter(std::string path) : path_(std::move(path)) {}

void SafetensorsStreamWriter::set_metadata(const std::string& key, const std::string& value) {
  if (out_) throw std::logic_error("safetensors stream: metadata after the first tensor");
  metadata_[key] = value;
}

void SafetensorsStreamWriter::declare(const std::string& name, DType dtype, std::vector<std::int64_t> shape) {
  if (out_) throw std::logic_error("safetensors stream: '" + name + "' declared after the first tensor");
  std::uint64_t n = dtype_size(dtype);
  for (const std::int64_t d : shape) {
    if (d < 0) throw std::invalid_argument("safetensors stream: '" + name + "' has a negative dimension");
    n *= static_cast<std::uint64_t>(d);
  }
  entries_.push_back({name, dtype, std::move(shape), n});
}

void SafetensorsStreamWriter::declare_mx(const std::string& name, const mx::Format& f, std::int64_t rows, std::int64_t cols, mx::Rounding rounding) {
  declare(name + kMxElementsSuffix, DType::U8, {rows, static_cast<std::int64_t>(f.packed_row_bytes(cols))});
  declare(name + kMxScalesSuffix, DType::U8, {rows, f.blocks_per_row(cols)});
  set_metadata(kMxMetaPrefix + name, mx_metadata_json(f, rows, cols, rounding));
}

void SafetensorsStreamWriter::start() {
  const std::string s = make_header(metadata_, entries_);
  std::uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(s.size()) >> (8 * i));
  out_ = std::make_unique<AtomicWriter>(path_);
  out_->write(len, 8);
  out_->write(s.data(), s.size());
}

void SafetensorsStreamWriter::write(const std::string& name, std::span<const std::uint8_t> bytes) {
  if (!out_) start();
  if (next_ >= entries_.size()) throw std::logic_error("safetensors stream: '" + name + "' was not declared");
  const Entry& e = entries_[next_];
  if (e.name != name || e.bytes != bytes.size()) {
    throw std::logic_error("safetensors stream: wrote '" + name + "' (" + std::to_string(bytes.size()) + " bytes) where '" + e.name + "' (" +
                           std::to_string(e.bytes) + " bytes) comes next");
  }
  out_->write(bytes.data(), bytes.size());
  ++next_;
}

void SafetensorsStreamWriter::write_f32(const std::string& name, std::span<const float> values) {
  write(name, {reinterpret_cast<const std::uint8_t*>(values.data()), values.size() * sizeof(float)});
}

void SafetensorsStreamWriter::write_mx(const std::string& name, const mx::PackedMatrix& m) {
  write(name + kMxElementsSuffix, m.elements);
  write(name + kMxScalesSuffix, m.scales);
}

void SafetensorsStreamWriter::commit() {
  if (!out_) start();
  if (next_ != entries_.size()) throw std::logic_error("safetensors stream: '" + entries_[next_].name + "' was declared but not written");
  out_->commit();
}

}  // namespace mfqat::ckpt
