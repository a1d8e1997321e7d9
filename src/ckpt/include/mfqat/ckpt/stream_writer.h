// A safetensors writer that holds one tensor at a time: every tensor is declared first (name,
// dtype, shape: the header is fixed by then), then written in the declared order straight to a
// temporary file, renamed over the target on commit. For checkpoints larger than memory (an
// anchor exported from an 8B-parameter model); the result has the layout SafetensorsWriter writes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "mfqat/ckpt/file.h"
#include "mfqat/ckpt/safetensors.h"

namespace mfqat::ckpt {

class SafetensorsStreamWriter {
 public:
  explicit SafetensorsStreamWriter(std::string path);
  void set_metadata(const std::string& key, const std::string& value);
  void declare(const std::string& name, DType dtype, std::vector<std::int64_t> shape);
  // NAME.mx_elements [rows, row bytes] U8 + NAME.mx_scales [rows, blocks] U8 + its metadata.
  void declare_mx(const std::string& name, const mx::Format& f, std::int64_t rows, std::int64_t cols,
                  mx::Rounding rounding = mx::Rounding::NearestEven);
  // The next declared tensor's bytes (throws std::logic_error on another name or size).
  void write(const std::string& name, std::span<const std::uint8_t> bytes);
  void write_f32(const std::string& name, std::span<const float> values);
  void write_mx(const std::string& name, const mx::PackedMatrix& m);
  // Every declared tensor written: fsync and rename over the path. Without it nothing is left.
  void commit();
  const std::string& path() const { return path_; }

 private:
  using Entry = HeaderEntry;
  void start();
  std::string path_;
  std::map<std::string, std::string> metadata_;
  std::vector<Entry> entries_;
  std::size_t next_ = 0;
  std::unique_ptr<AtomicWriter> out_;  // opened at the first write (the header is known then)
};

}  // namespace mfqat::ckpt
