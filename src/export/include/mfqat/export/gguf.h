// GGUF (the file format of llama.cpp / ggml), version 3: a validated reader (mmap) and a streaming
// writer that leaves nothing at the path unless every tensor was written. Layout (ggml's
// gguf.cpp): "GGUF", u32 version, u64 tensor count, u64 key-value count, the key-values, the
// tensor infos (name, u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml type, u64 offset into
// the data section), padding to general.alignment (default 32), then the tensor data, each tensor
// at an aligned offset. See docs/export.md.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mfqat/ckpt/file.h"
#include "mfqat/export/ggml_types.h"

namespace mfqat::gguf {

inline constexpr std::uint32_t kDefaultAlignment = 32;

enum class ValueType : std::uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
  String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* value_type_name(ValueType t);

// One metadata value. Scalars keep their type; integers are held in i (signed types, Bool) or u
// (unsigned types), floats in f. An array holds elements of one type (not nested arrays).
struct Value {
  ValueType type = ValueType::U32;
  ValueType elem = ValueType::U8;  // arrays only
  std::uint64_t u = 0;
  std::int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<Value> arr;

  static Value u32(std::uint32_t v);
  static Value i32(std::int32_t v);
  static Value u64(std::uint64_t v);
  static Value f32(float v);
  static Value boolean(bool v);
  static Value str(std::string v);
  static Value strings(const std::vector<std::string>& v);
  static Value i32s(const std::vector<std::int32_t>& v);
  static Value f32s(const std::vector<float>& v);

  bool is_integer() const;
  // Any integer scalar as int64 (throws std::runtime_error for another type or a value > INT64_MAX).
  std::int64_t as_int() const;
  double as_float() const;  // F32/F64 or any integer
  std::string to_string(std::size_t max_items = 8) const;  // for inspect: arrays shortened
};

struct TensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<std::int64_t> ne;  // ne[0] is the innermost (row) dimension
  std::uint64_t offset = 0;      // into the data section
  std::uint64_t bytes = 0;
  std::int64_t numel() const;
  std::int64_t rows() const { return ne.empty() ? 0 : numel() / ne[0]; }
};

// A GGUF file mapped read-only. Every count, length, type, dimension and offset is checked on open
// against the file's size; errors are std::runtime_error("FILE: [tensor 'NAME': ]reason"), one line.
class File {
 public:
  static File open(const std::string& path);
  static File from_bytes(std::vector<std::uint8_t> bytes, const std::string& name);

  const std::string& name() const { return name_; }
  std::uint32_t version() const { return version_; }
  std::uint32_t alignment() const { return alignment_; }
  std::uint64_t file_size() const { return size_; }
  std::uint64_t data_offset() const { return data_offset_; }
  const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
  const Value* find_value(std::string_view key) const;
  // The value of `key` with the expected type (throws naming the file and key when absent or
  // of another type).
  const Value& get(std::string_view key, ValueType type) const;
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(std::string_view name) const;
  std::span<const std::uint8_t> data(const TensorInfo& t) const;

 private:
  void parse();
  [[noreturn]] void fail(const std::string& why) const;
  std::string name_;
  std::shared_ptr<const std::uint8_t> base_;
  std::uint64_t size_ = 0, data_offset_ = 0;
  std::uint32_t version_ = 0, alignment_ = kDefaultAlignment;
  std::vector<std::pair<std::string, Value>> kv_;
  std::map<std::string, std::size_t, std::less<>> kv_index_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;
};

// Writes a GGUF v3 file: metadata and tensors are declared first (the header is fixed then), the
// tensors' bytes follow one at a time in the declared order, and commit() renames the finished
// file over the path. Without commit() (an exception, a refusal) nothing is left at the path.
class Writer {
 public:
  explicit Writer(std::string path, std::uint32_t alignment = kDefaultAlignment);
  void set(const std::string& key, Value v);  // insertion order is kept; a repeated key throws
  void declare(const std::string& name, GgmlType type, std::vector<std::int64_t> ne);
  // The next declared tensor's bytes (throws std::logic_error on another name or size).
  void write(const std::string& name, std::span<const std::uint8_t> bytes);
  void commit();
  std::uint64_t bytes_written() const { return pos_; }

 private:
  void start();
  std::string path_;
  std::uint32_t alignment_;
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<TensorInfo> tensors_;
  std::size_t next_ = 0;
  std::uint64_t pos_ = 0, data_start_ = 0;
  std::unique_ptr<ckpt::AtomicWriter> out_;
};

}  // namespace mfqat::gguf
