// safetensors reader (mmap, fully validated) and atomic writer, with MX tensors stored as
// NAME.mx_elements + NAME.mx_scales and described in __metadata__ (see docs/checkpoint.md).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mfqat/mx/quantize.h"

namespace mfqat::ckpt {

enum class DType : std::uint8_t { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL };
const char* dtype_name(DType d);
std::optional<DType> parse_dtype(std::string_view s);
std::size_t dtype_size(DType d);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // offsets into the data section
  std::int64_t numel() const;
};

// Where an MX tensor's parts are, and what they mean.
struct MxTensorInfo {
  std::string name;  // logical name (without .mx_elements / .mx_scales)
  mx::Format format;
  std::int64_t rows = 0, cols = 0;
  std::string rounding = "even";
  const TensorInfo* elements = nullptr;
  const TensorInfo* scales = nullptr;
};

inline constexpr const char* kMxElementsSuffix = ".mx_elements";
inline constexpr const char* kMxScalesSuffix = ".mx_scales";
inline constexpr const char* kMxMetaPrefix = "mfqat.mx.";          // + logical name -> JSON string
inline constexpr const char* kFormatVersionKey = "mfqat.format_version";
inline constexpr const char* kModelConfigKey = "mfqat.model_config";
inline constexpr const char* kAnchorKey = "mfqat.anchor";  // an anchor checkpoint: the format of its MX weights
// An anchor's block size (decimal string, e.g. "32"); written by export and kept by convert. Files
// without it (older anchors) take the block size of their MX tensors, which must all agree.
inline constexpr const char* kAnchorBlockSizeKey = "mfqat.anchor_block_size";

// A safetensors file mapped read-only. Every offset, size, dtype and MX metadata field is checked
// on open; errors are std::runtime_error("FILE: [tensor 'NAME': ]reason"), one line.
//
// Move-only: MxTensorInfo::elements / ::scales and the pointers returned by find() / find_mx()
// point into the heap buffers of tensors_ and mx_. A move hands those buffers over unchanged (the
// std::vector move guarantee), so they stay valid and now belong to the moved-to object; a copy
// would have pointed into the source, so copying is deleted.
class SafetensorsFile {
 public:
  SafetensorsFile() = default;  // an empty file (no tensors); assign one from open()/from_bytes()
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  SafetensorsFile(SafetensorsFile&&) noexcept = default;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept = default;
  ~SafetensorsFile() = default;

  static SafetensorsFile open(const std::string& path);  // mmap
  // Parses an in-memory image (tests, fuzzing). `name` is used in messages.
  static SafetensorsFile from_bytes(std::vector<std::uint8_t> bytes, const std::string& name);

  const std::string& name() const { return name_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in offset order
  const TensorInfo* find(std::string_view name) const;
  std::span<const std::uint8_t> data(const TensorInfo& t) const;
  // Drops the mapped pages of a tensor read once (streaming import/export): they leave the
  // process's resident set and are read again from the page cache or disk if touched. No-op for
  // a file read into memory.
  void release(const TensorInfo& t) const;
  std::uint64_t file_size() const { return size_; }
  std::uint64_t header_size() const { return header_len_; }

  const std::vector<MxTensorInfo>& mx_tensors() const { return mx_; }
  const MxTensorInfo* find_mx(std::string_view name) const;
  // True for the parts of MX tensors (NAME.mx_elements / NAME.mx_scales) listed in the metadata.
  bool is_mx_part(const TensorInfo& t) const;
  // Copies an MX tensor into a PackedMatrix.
  mx::PackedMatrix load_mx(const MxTensorInfo& m) const;
  // Reads an F32 tensor (any shape; 1-D is one row, N-D is flattened to rows x last dim).
  std::vector<float> load_f32(const TensorInfo& t) const;

 private:
  void parse();
  [[noreturn]] void fail(const std::string& why) const;
  [[noreturn]] void fail(const std::string& tensor, const std::string& why) const;

  std::string name_;
  std::shared_ptr<const std::uint8_t> base_;  // mapping or owned buffer
  bool mapped_ = false;
  std::uint64_t size_ = 0, header_len_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;
  std::vector<MxTensorInfo> mx_;
};

// Collects tensors and metadata, then writes them atomically (temp file, fsync, rename).
class SafetensorsWriter {
 public:
  // Plain tensor; the bytes are copied.
  void add(const std::string& name, DType dtype, std::vector<std::int64_t> shape, std::span<const std::uint8_t> bytes);
  void add_f32(const std::string& name, std::vector<std::int64_t> shape, std::span<const float> values);
  // MX tensor as NAME.mx_elements [rows, row_bytes] U8 + NAME.mx_scales [rows, blocks] U8 + metadata.
  void add_mx(const std::string& name, const mx::PackedMatrix& m, mx::Rounding rounding = mx::Rounding::NearestEven);
  void set_metadata(const std::string& key, const std::string& value);
  // Copies everything of `in` that is not an MX tensor: plain tensors (bytes as they are) and the
  // metadata other than MX descriptions. For rewriting a file's MX tensors in another form.
  void add_non_mx(const SafetensorsFile& in);
  // Throws std::runtime_error naming the path (nothing is left at `path` on failure).
  void write(const std::string& path) const;
  std::vector<std::uint8_t> to_bytes() const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::uint8_t> bytes;
  };
  std::string header() const;
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// The header (JSON, padded so that the data starts 8-byte aligned) of a file with these tensors in
// this order: what SafetensorsWriter and SafetensorsStreamWriter write.
struct HeaderEntry {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t bytes;
};
std::string make_header(const std::map<std::string, std::string>& metadata, const std::vector<HeaderEntry>& entries);

// The JSON metadata value that describes one MX tensor.
std::string mx_metadata_json(const mx::Format& f, std::int64_t rows, std::int64_t cols, mx::Rounding rounding);

}  // namespace mfqat::ckpt
