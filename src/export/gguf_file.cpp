// GGUF reader and the metadata value type. Every length and count is checked against the bytes
// that remain before it is used, so a hostile file fails with one line, never a huge allocation.
#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "mfqat/export/gguf.h"

namespace mfqat::gguf {

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::U8: return "u8";
    case ValueType::I8: return "i8";
    case ValueType::U16: return "u16";
    case ValueType::I16: return "i16";
    case ValueType::U32: return "u32";
    case ValueType::I32: return "i32";
    case ValueType::F32: return "f32";
    case ValueType::Bool: return "bool";
    case ValueType::String: return "string";
    case ValueType::Array: return "array";
    case ValueType::U64: return "u64";
    case ValueType::I64: return "i64";
    case ValueType::F64: return "f64";
  }
  return "?";
}

Value Value::u32(std::uint32_t v) { Value x; x.type = ValueType::U32; x.u = v; return x; }
Value Value::i32(std::int32_t v) { Value x; x.type = ValueType::I32; x.i = v; return x; }
Value Value::u64(std::uint64_t v) { Value x; x.type = ValueType::U64; x.u = v; return x; }
Value Value::f32(float v) { Value x; x.type = ValueType::F32; x.f = v; return x; }
Value Value::boolean(bool v) { Value x; x.type = ValueType::Bool; x.i = v ? 1 : 0; return x; }
Value Value::str(std::string v) { Value x; x.type = ValueType::String; x.s = std::move(v); return x; }
namespace {
template <typename T, typename Make>
Value array_of(ValueType elem, const std::vector<T>& v, Make make) {
  Value x;
  x.type = ValueType::Array;
  x.elem = elem;
  x.arr.reserve(v.size());
  for (const auto& e : v) x.arr.push_back(make(e));
  return x;
}
}  // namespace
Value Value::strings(const std::vector<std::string>& v) { return array_of(ValueType::String, v, str); }
Value Value::i32s(const std::vector<std::int32_t>& v) { return array_of(ValueType::I32, v, i32); }
Value Value::f32s(const std::vector<float>& v) { return array_of(ValueType::F32, v, f32); }

bool Value::is_integer() const {
  switch (type) {
    case ValueType::U8: case ValueType::U16: case ValueType::U32: case ValueType::U64:
    case ValueType::I8: case ValueType::I16: case ValueType::I32: case ValueType::I64: return true;
    default: return false;
  }
}

std::int64_t Value::as_int() const {
  switch (type) {
    case ValueType::U8: case ValueType::U16: case ValueType::U32: case ValueType::U64:
      if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) throw std::runtime_error("integer out of range");
      return static_cast<std::int64_t>(u);
    case ValueType::I8: case ValueType::I16: case ValueType::I32: case ValueType::I64: return i;
    default: throw std::runtime_error(std::string("a ") + value_type_name(type) + ", not an integer");
  }
}

double Value::as_float() const {
  if (type == ValueType::F32 || type == ValueType::F64) return f;
  return static_cast<double>(as_int());
}

std::string Value::to_string(std::size_t max_items) const {
  switch (type) {
    case ValueType::String: return ckpt::printable(s, 120);
    case ValueType::Bool: return i ? "true" : "false";
    case ValueType::F32: case ValueType::F64: {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.9g", f);
      return buf;
    }
    case ValueType::Array: {
      std::string out = std::string("[") + value_type_name(elem) + " x " + std::to_string(arr.size()) + "]";
      if (!arr.empty()) {
        out += " ";
        for (std::size_t k = 0; k < arr.size() && k < max_items; ++k) out += (k ? ", " : "") + arr[k].to_string(0);
        if (arr.size() > max_items) out += ", ...";
      }
      return out;
    }
    default: return is_integer() && (type == ValueType::U8 || type == ValueType::U16 || type == ValueType::U32 || type == ValueType::U64)
                         ? std::to_string(u)
                         : std::to_string(i);
  }
}

std::int64_t TensorInfo::numel() const {
  std::int64_t n = 1;
  for (auto d : ne) n *= d;
  return n;
}

// ---------------------------------------------------------------- reader

namespace {

std::size_t scalar_size(ValueType t) {
  switch (t) {
    case ValueType::U8: case ValueType::I8: case ValueType::Bool: return 1;
    case ValueType::U16: case ValueType::I16: return 2;
    case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
    case ValueType::U64: case ValueType::I64: case ValueType::F64: return 8;
    default: return 0;
  }
}

struct Cursor {
  const std::uint8_t* p;
  std::uint64_t pos, end;
  const File* file;
  std::string what;  // what is being read, for messages
  std::uint64_t left() const { return end - pos; }
  void need(std::uint64_t n, const char* item) {
    if (n > left()) throw std::runtime_error("truncated " + what + ": " + item + " needs " + std::to_string(n) + " bytes at offset " +
                                             std::to_string(pos) + ", " + std::to_string(left()) + " left");
  }
  std::uint64_t uint(std::size_t n, const char* item) {
    need(n, item);
    std::uint64_t v = 0;
    for (std::size_t k = 0; k < n; ++k) v |= static_cast<std::uint64_t>(p[pos + k]) << (8 * k);
    pos += n;
    return v;
  }
  std::string string(const char* item) {
    const std::uint64_t n = uint(8, item);
    need(n, item);
    std::string s(reinterpret_cast<const char*>(p + pos), static_cast<std::size_t>(n));
    pos += n;
    return s;
  }
  Value scalar(ValueType t) {
    Value v;
    v.type = t;
    const std::size_t n = scalar_size(t);
    const std::uint64_t raw = uint(n, "a value");
    switch (t) {
      case ValueType::U8: case ValueType::U16: case ValueType::U32: case ValueType::U64: v.u = raw; break;
      case ValueType::I8: v.i = static_cast<std::int8_t>(raw); break;
      case ValueType::I16: v.i = static_cast<std::int16_t>(raw); break;
      case ValueType::I32: v.i = static_cast<std::int32_t>(raw); break;
      case ValueType::I64: v.i = static_cast<std::int64_t>(raw); break;
      case ValueType::Bool:
        if (raw > 1) throw std::runtime_error(what + ": bool value " + std::to_string(raw) + " is not 0 or 1");
        v.i = static_cast<std::int64_t>(raw);
        break;
      case ValueType::F32: {
        const auto b = static_cast<std::uint32_t>(raw);
        float f;
        std::memcpy(&f, &b, 4);
        v.f = f;
        break;
      }
      case ValueType::F64: std::memcpy(&v.f, &raw, 8); break;
      default: break;
    }
    return v;
  }
  ValueType type(const char* item) {
    const std::uint64_t t = uint(4, item);
    if (t > static_cast<std::uint64_t>(ValueType::F64)) throw std::runtime_error(what + ": unknown value type " + std::to_string(t));
    return static_cast<ValueType>(t);
  }
  Value value(ValueType t) {
    if (t == ValueType::String) return Value::str(string("a string"));
    if (t != ValueType::Array) return scalar(t);
    Value v;
    v.type = ValueType::Array;
    v.elem = type("an array's element type");
    if (v.elem == ValueType::Array) throw std::runtime_error(what + ": nested arrays are not supported");
    const std::uint64_t n = uint(8, "an array's length");
    const std::uint64_t min_each = v.elem == ValueType::String ? 8 : scalar_size(v.elem);
    if (n > left() / min_each)
      throw std::runtime_error("truncated " + what + ": an array of " + std::to_string(n) + " " + value_type_name(v.elem) +
                               " needs more than the " + std::to_string(left()) + " bytes left");
    v.arr.reserve(static_cast<std::size_t>(n));
    for (std::uint64_t k = 0; k < n; ++k) v.arr.push_back(value(v.elem));
    return v;
  }
};

}  // namespace

File File::open(const std::string& path) {
  File f;
  f.name_ = path;
  ckpt::MappedFile m = ckpt::map_file(path);
  f.size_ = m.size;
  if (f.size_ == 0) f.fail("truncated file (0 bytes; a GGUF header has 24)");
  f.base_ = std::move(m.data);
  f.parse();
  return f;
}

File File::from_bytes(std::vector<std::uint8_t> bytes, const std::string& name) {
  File f;
  f.name_ = name;
  f.size_ = bytes.size();
  auto owned = std::make_shared<std::vector<std::uint8_t>>(std::move(bytes));
  f.base_ = std::shared_ptr<const std::uint8_t>(owned, owned->data());
  f.parse();
  return f;
}

void File::fail(const std::string& why) const { throw std::runtime_error(name_ + ": " + ckpt::printable(why, 1000)); }

void File::parse() {
  Cursor c{base_.get(), 0, size_, this, "header"};
  try {
    if (size_ < 4 || std::memcmp(base_.get(), "GGUF", 4) != 0) fail("not a GGUF file (no \"GGUF\" magic)");
    c.pos = 4;
    version_ = static_cast<std::uint32_t>(c.uint(4, "the version"));
    if (version_ != 2 && version_ != 3)
      fail("GGUF version " + std::to_string(version_) + " is not supported (2 and 3 are; a big-endian file reads as a huge version)");
    const std::uint64_t n_tensors = c.uint(8, "the tensor count");
    const std::uint64_t n_kv = c.uint(8, "the metadata count");
    // every key-value has at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least 8 + 4 + 8 + 4 + 8
    if (n_kv > c.left() / 13) fail("metadata count " + std::to_string(n_kv) + " does not fit the file");
    if (n_tensors > c.left() / 32) fail("tensor count " + std::to_string(n_tensors) + " does not fit the file");
    for (std::uint64_t k = 0; k < n_kv; ++k) {
      c.what = "metadata entry " + std::to_string(k);
      std::string key = c.string("a key");
      if (key.empty()) fail("metadata entry " + std::to_string(k) + ": empty key");
      c.what = "metadata '" + ckpt::printable(key) + "'";
      const ValueType t = c.type("a value type");
      Value v = c.value(t);
      if (kv_index_.count(key)) fail("metadata key '" + key + "' appears twice");
      kv_index_.emplace(key, kv_.size());
      kv_.emplace_back(std::move(key), std::move(v));
    }
    if (const Value* a = find_value("general.alignment")) {
      if (a->type != ValueType::U32 || a->u == 0 || (a->u & (a->u - 1)) != 0)
        fail("general.alignment must be a power-of-two u32, not " + std::string(value_type_name(a->type)) + " " + a->to_string());
      alignment_ = static_cast<std::uint32_t>(a->u);
    }
    tensors_.reserve(static_cast<std::size_t>(n_tensors));
    for (std::uint64_t k = 0; k < n_tensors; ++k) {
      c.what = "tensor info " + std::to_string(k);
      TensorInfo t;
      t.name = c.string("a tensor name");
      c.what = "tensor '" + ckpt::printable(t.name) + "'";
      if (t.name.empty()) fail("tensor info " + std::to_string(k) + ": empty name");
      const std::uint64_t nd = c.uint(4, "n_dims");
      if (nd == 0 || nd > 4) fail(c.what + ": " + std::to_string(nd) + " dimensions (1 to 4)");
      std::uint64_t numel = 1;
      for (std::uint64_t d = 0; d < nd; ++d) {
        const std::uint64_t n = c.uint(8, "a dimension");
        if (n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
            (n != 0 && numel > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / n))
          fail(c.what + ": dimensions overflow");
        numel *= n;
        t.ne.push_back(static_cast<std::int64_t>(n));
      }
      const auto type_id = static_cast<std::uint32_t>(c.uint(4, "a type"));
      const TypeInfo* ti = type_info(type_id);
      if (!ti) fail(c.what + ": ggml type " + std::to_string(type_id) + " is not known to mfqat");
      t.type = ti->type;
      if (t.ne[0] % ti->block != 0)
        fail(c.what + ": rows of " + std::to_string(t.ne[0]) + " are not whole " + ti->name + " blocks of " + std::to_string(ti->block));
      if (numel / static_cast<std::uint64_t>(ti->block) > std::numeric_limits<std::uint64_t>::max() / ti->bytes)
        fail(c.what + ": size overflows");
      t.bytes = numel / static_cast<std::uint64_t>(ti->block) * ti->bytes;
      t.offset = c.uint(8, "an offset");
      if (t.offset % alignment_ != 0) fail(c.what + ": offset " + std::to_string(t.offset) + " is not a multiple of the alignment " + std::to_string(alignment_));
      if (index_.count(t.name)) fail("tensor '" + t.name + "' appears twice");
      index_.emplace(t.name, tensors_.size());
      tensors_.push_back(std::move(t));
    }
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    if (m.rfind(name_ + ": ", 0) == 0) throw;
    fail(m);
  }
  data_offset_ = (c.pos + alignment_ - 1) / alignment_ * alignment_;
  if (data_offset_ > size_ && !tensors_.empty()) fail("truncated file: the data section would start at " + std::to_string(data_offset_) + " of " + std::to_string(size_) + " bytes");
  const std::uint64_t data_size = size_ > data_offset_ ? size_ - data_offset_ : 0;
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : tensors_) {
    if (t.offset > data_size || t.bytes > data_size - t.offset)
      fail("tensor '" + ckpt::printable(t.name) + "': data [" + std::to_string(t.offset) + ", +" + std::to_string(t.bytes) +
           ") runs past the end of the file (data section of " + std::to_string(data_size) + " bytes)");
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (std::size_t k = 1; k < by_offset.size(); ++k)
    if (by_offset[k - 1]->offset + by_offset[k - 1]->bytes > by_offset[k]->offset)
      fail("tensors '" + ckpt::printable(by_offset[k - 1]->name) + "' and '" + ckpt::printable(by_offset[k]->name) + "' overlap");
}

const Value* File::find_value(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const Value& File::get(std::string_view key, ValueType type) const {
  const Value* v = find_value(key);
  if (!v) fail("metadata '" + std::string(key) + "' is missing");
  if (v->type != type && !(v->is_integer() && (type == ValueType::U32 || type == ValueType::U64 || type == ValueType::I32)))
    fail("metadata '" + std::string(key) + "' is a " + value_type_name(v->type) + ", not a " + value_type_name(type));
  return *v;
}

const TensorInfo* File::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const std::uint8_t> File::data(const TensorInfo& t) const {
  return {base_.get() + data_offset_ + t.offset, static_cast<std::size_t>(t.bytes)};
}

}  // namespace mfqat::gguf
