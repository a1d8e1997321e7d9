#include "mfqat/ckpt/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "mfqat/ckpt/file.h"

namespace mfqat::ckpt {

using nlohmann::json;

namespace {

struct DTypeRow {
  DType d;
  const char* name;
  std::size_t size;
};
constexpr DTypeRow kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::I16, "I16", 2}, {DType::I8, "I8", 1},
    {DType::U64, "U64", 8}, {DType::U32, "U32", 4}, {DType::U16, "U16", 2}, {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
};

constexpr std::uint64_t kMaxHeader = 100ull << 20;  // as the reference implementation
constexpr std::int64_t kMaxDim = std::int64_t{1} << 48;

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}


}  // namespace

const char* dtype_name(DType d) {
  for (const auto& r : kDTypes) {
    if (r.d == d) return r.name;
  }
  return "?";
}
std::optional<DType> parse_dtype(std::string_view s) {
  for (const auto& r : kDTypes) {
    if (s == r.name) return r.d;
  }
  return std::nullopt;
}
std::size_t dtype_size(DType d) {
  for (const auto& r : kDTypes) {
    if (r.d == d) return r.size;
  }
  return 0;
}

std::int64_t TensorInfo::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------- reader

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.name_ = path;
  MappedFile m = map_file(path);
  f.size_ = m.size;
  if (f.size_ == 0) f.fail("truncated file (0 bytes, a safetensors file has at least 8)");
  f.mapped_ = true;
  f.base_ = std::move(m.data);
  f.parse();
  return f;
}

SafetensorsFile SafetensorsFile::from_bytes(std::vector<std::uint8_t> bytes, const std::string& name) {
  SafetensorsFile f;
  f.name_ = name;
  f.size_ = bytes.size();
  auto owned = std::make_shared<std::vector<std::uint8_t>>(std::move(bytes));
  f.base_ = std::shared_ptr<const std::uint8_t>(owned, owned->data());
  f.parse();
  return f;
}

// Tensor names, metadata keys and values come from the file: printable() keeps the message one line.
void SafetensorsFile::fail(const std::string& why) const { throw std::runtime_error(name_ + ": " + printable(why, 1000)); }
void SafetensorsFile::fail(const std::string& tensor, const std::string& why) const {
  throw std::runtime_error(name_ + ": tensor '" + printable(tensor) + "': " + printable(why, 1000));
}

void SafetensorsFile::parse() {
  if (size_ < 8) fail("truncated file (" + std::to_string(size_) + " bytes, a safetensors file has at least 8)");
  const std::uint8_t* b = base_.get();
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(b[i]) << (8 * i);
  if (n > size_ - 8) {
    fail("header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size_) + " bytes)");
  }
  if (n > kMaxHeader) fail("header length " + std::to_string(n) + " exceeds the 100 MB limit");
  header_len_ = n;
  json h;
  try {
    h = json::parse(b + 8, b + 8 + n);
  } catch (const json::exception& e) {
    std::string what = e.what();
    std::replace(what.begin(), what.end(), '\n', ' ');
    fail("header is not valid JSON (" + what + ")");
  }
  if (!h.is_object()) fail("header is not a JSON object");
  const std::uint64_t data_size = size_ - 8 - n;

  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) fail("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail("__metadata__ value of '" + m.key() + "' is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) fail(key, "entry is not an object");
    TensorInfo t;
    t.name = key;
    const auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) fail(key, "missing dtype");
    const auto d = parse_dtype(dt->get<std::string>());
    if (!d) fail(key, "unknown dtype '" + dt->get<std::string>() + "'");
    t.dtype = *d;
    const auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) fail(key, "missing shape");
    unsigned __int128 numel = 1;
    for (const auto& e : *sh) {
      if (!e.is_number_integer() || e.get<std::int64_t>() < 0 || e.get<std::int64_t>() > kMaxDim) {
        fail(key, "bad shape " + sh->dump());
      }
      t.shape.push_back(e.get<std::int64_t>());
      numel *= static_cast<unsigned __int128>(t.shape.back());
      if (numel > (static_cast<unsigned __int128>(1) << 64)) fail(key, "shape " + sh->dump() + " is too large");
    }
    const auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned()) {
      fail(key, "missing or malformed data_offsets");
    }
    t.begin = (*off)[0].get<std::uint64_t>();
    t.end = (*off)[1].get<std::uint64_t>();
    if (t.begin > t.end) fail(key, "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "] are reversed");
    if (t.end > data_size) {
      fail(key, "data_offsets end " + std::to_string(t.end) + " is past the end of the data (" + std::to_string(data_size) + " bytes)");
    }
    const unsigned __int128 need = numel * dtype_size(t.dtype);
    if (need != t.end - t.begin) {
      fail(key, "size " + std::to_string(t.end - t.begin) + " bytes does not match " + dtype_name(t.dtype) + " " +
                    shape_str(t.shape) + " (" + std::to_string(static_cast<std::uint64_t>(need)) + " bytes)");
    }
    tensors_.push_back(std::move(t));
  }
  // The tensors must tile the data section: no overlap, no gap, nothing after the last one.
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& c) {
    return a.begin != c.begin ? a.begin < c.begin : a.end < c.end;
  });
  std::uint64_t pos = 0;
  for (const auto& t : tensors_) {
    if (t.begin < pos) fail(t.name, "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "] overlap another tensor");
    if (t.begin > pos) fail(t.name, "gap of " + std::to_string(t.begin - pos) + " bytes before this tensor's data");
    pos = t.end;
  }
  if (pos != data_size) fail(std::to_string(data_size - pos) + " bytes after the last tensor's data");
  for (std::size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;

  // MX tensors described in the metadata.
  for (const auto& [key, value] : metadata_) {
    if (key.rfind(kMxMetaPrefix, 0) != 0) continue;
    const std::string name = key.substr(std::strlen(kMxMetaPrefix));
    json m;
    try {
      m = json::parse(value);
    } catch (const json::exception&) {
      fail(name, "MX metadata is not valid JSON");
    }
    if (!m.is_object()) fail(name, "MX metadata is not a JSON object");
    MxTensorInfo mt;
    mt.name = name;
    try {
      // Integers must be JSON integers: get<int>() would silently truncate 32.5 or 2^32 + 32.
      const json& bsj = m.at("block_size");
      if (!bsj.is_number_integer()) fail(name, "bad MX metadata (block_size " + bsj.dump() + " is not an integer)");
      if (bsj.get<std::int64_t>() < 1 || bsj.get<std::int64_t>() > mx::kMaxBlockSize) {
        fail(name, "MX block_size " + bsj.dump() + " is out of range 1.." + std::to_string(mx::kMaxBlockSize));
      }
      mt.format = mx::find_format(m.at("format").get<std::string>(), bsj.get<int>());
      const auto& shp = m.at("shape");
      if (!shp.is_array() || shp.size() != 2) fail(name, "MX shape must be [rows, cols]");
      if (!shp[0].is_number_integer() || !shp[1].is_number_integer()) fail(name, "bad MX shape " + shp.dump());
      mt.rows = shp[0].get<std::int64_t>();
      mt.cols = shp[1].get<std::int64_t>();
      if (mt.rows < 0 || mt.cols < 0 || mt.rows > kMaxDim || mt.cols > kMaxDim) fail(name, "bad MX shape " + shp.dump());
      if (m.at("scale").get<std::string>() != "e8m0") fail(name, "unsupported scale rule '" + m.at("scale").get<std::string>() + "'");
      if (m.at("packing").get<std::string>() != "lsb-first") {
        fail(name, "unsupported packing '" + m.at("packing").get<std::string>() + "'");
      }
      // Optional descriptive fields (the writer always sets them): when present they must agree.
      if (const auto eb = m.find("element_bits"); eb != m.end()) {
        if (!eb->is_number_integer() || eb->get<std::int64_t>() != mt.format.bits) {
          fail(name, "MX element_bits " + eb->dump() + " disagrees with " + mt.format.name + " (" +
                         std::to_string(mt.format.bits) + " bits)");
        }
      }
      if (const auto ax = m.find("axis"); ax != m.end() && !(ax->is_string() && ax->get<std::string>() == "last")) {
        fail(name, "unsupported MX axis " + ax->dump() + " (blocks run along the last axis)");
      }
      mt.rounding = m.value("rounding", std::string("even"));
    } catch (const json::exception& e) {
      fail(name, std::string("bad MX metadata (") + e.what() + ")");
    } catch (const std::invalid_argument& e) {
      fail(name, e.what());
    }
    const TensorInfo* el = find(name + kMxElementsSuffix);
    const TensorInfo* sc = find(name + kMxScalesSuffix);
    if (!el) fail(name, std::string("MX elements tensor '") + name + kMxElementsSuffix + "' is missing");
    if (!sc) fail(name, std::string("MX scales tensor '") + name + kMxScalesSuffix + "' is missing");
    if (el->dtype != DType::U8) fail(el->name, std::string("dtype ") + dtype_name(el->dtype) + ", expected U8");
    if (sc->dtype != DType::U8) fail(sc->name, std::string("dtype ") + dtype_name(sc->dtype) + ", expected U8");
    const std::vector<std::int64_t> want_el = {mt.rows, static_cast<std::int64_t>(mt.format.packed_row_bytes(mt.cols))};
    const std::vector<std::int64_t> want_sc = {mt.rows, mt.format.blocks_per_row(mt.cols)};
    if (el->shape != want_el) {
      fail(el->name, "shape " + shape_str(el->shape) + " does not fit " + mt.format.name + " [" + std::to_string(mt.rows) +
                         ", " + std::to_string(mt.cols) + "] (expected " + shape_str(want_el) + ")");
    }
    if (sc->shape != want_sc) {
      fail(sc->name, "scale tensor shape " + shape_str(sc->shape) + ", expected " + shape_str(want_sc) + " for [" +
                         std::to_string(mt.rows) + ", " + std::to_string(mt.cols) + "] in blocks of " +
                         std::to_string(mt.format.block_size));
    }
    mt.elements = el;
    mt.scales = sc;
    mx_.push_back(std::move(mt));
  }
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const MxTensorInfo* SafetensorsFile::find_mx(std::string_view name) const {
  for (const auto& m : mx_) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

bool SafetensorsFile::is_mx_part(const TensorInfo& t) const {
  for (const auto& m : mx_) {
    if (m.elements == &t || m.scales == &t) return true;
  }
  return false;
}

std::span<const std::uint8_t> SafetensorsFile::data(const TensorInfo& t) const {
  return {base_.get() + 8 + header_len_ + t.begin, static_cast<std::size_t>(t.end - t.begin)};
}

void SafetensorsFile::release(const TensorInfo& t) const {
  if (!mapped_) return;
  // whole pages inside the tensor's bytes only: a neighbour's page may still be in use
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto b = reinterpret_cast<std::uintptr_t>(base_.get() + 8 + header_len_ + t.begin);
  const auto e = reinterpret_cast<std::uintptr_t>(base_.get() + 8 + header_len_ + t.end);
  const std::uintptr_t pb = (b + page - 1) / page * page, pe = e / page * page;
  if (pe > pb) ::madvise(reinterpret_cast<void*>(pb), pe - pb, MADV_DONTNEED);  // a hint: failure changes nothing
}

mx::PackedMatrix SafetensorsFile::load_mx(const MxTensorInfo& m) const {
  mx::PackedMatrix p;
  p.format = m.format;
  p.rows = m.rows;
  p.cols = m.cols;
  const auto e = data(*m.elements), s = data(*m.scales);
  p.elements.assign(e.begin(), e.end());
  p.scales.assign(s.begin(), s.end());
  return p;
}

std::vector<float> SafetensorsFile::load_f32(const TensorInfo& t) const {
  if (t.dtype != DType::F32) fail(t.name, std::string("dtype ") + dtype_name(t.dtype) + ", expected F32");
  const auto d = data(t);
  std::vector<float> out(d.size() / 4);
  if (!out.empty()) std::memcpy(out.data(), d.data(), d.size());
  return out;
}

// ---------------------------------------------------------------- writer

std::string mx_metadata_json(const mx::Format& f, std::int64_t rows, std::int64_t cols, mx::Rounding rounding) {
  json m = {{"format", f.name},          {"block_size", f.block_size}, {"shape", {rows, cols}},
            {"scale", "e8m0"},           {"rounding", mx::rounding_name(rounding)},
            {"packing", "lsb-first"},    {"element_bits", f.bits},     {"axis", "last"}};
  return m.dump();
}

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
                            std::span<const std::uint8_t> bytes) {
  if (name.empty() || name == "__metadata__") throw std::invalid_argument("bad tensor name '" + name + "'");
  for (const auto& e : entries_) {
    if (e.name == name) throw std::invalid_argument("duplicate tensor name '" + name + "'");
  }
  std::int64_t numel = 1;
  for (auto d : shape) numel *= d;
  if (static_cast<std::size_t>(numel) * dtype_size(dtype) != bytes.size()) {
    throw std::invalid_argument("tensor '" + name + "': " + std::to_string(bytes.size()) + " bytes do not match " +
                                dtype_name(dtype) + " " + shape_str(shape));
  }
  entries_.push_back({name, dtype, std::move(shape), std::vector<std::uint8_t>(bytes.begin(), bytes.end())});
}

void SafetensorsWriter::add_f32(const std::string& name, std::vector<std::int64_t> shape, std::span<const float> v) {
  add(name, DType::F32, std::move(shape), {reinterpret_cast<const std::uint8_t*>(v.data()), v.size() * 4});
}

void SafetensorsWriter::add_mx(const std::string& name, const mx::PackedMatrix& m, mx::Rounding rounding) {
  add(name + kMxElementsSuffix, DType::U8, {m.rows, static_cast<std::int64_t>(m.format.packed_row_bytes(m.cols))}, m.elements);
  add(name + kMxScalesSuffix, DType::U8, {m.rows, m.format.blocks_per_row(m.cols)}, m.scales);
  set_metadata(kMxMetaPrefix + name, mx_metadata_json(m.format, m.rows, m.cols, rounding));
}

void SafetensorsWriter::add_non_mx(const SafetensorsFile& in) {
  for (const auto& [k, v] : in.metadata()) {
    if (k.rfind(kMxMetaPrefix, 0) != 0) set_metadata(k, v);
  }
  for (const auto& t : in.tensors()) {
    if (!in.is_mx_part(t)) add(t.name, t.dtype, t.shape, in.data(t));
  }
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

std::string SafetensorsWriter::header() const {
  std::vector<HeaderEntry> es;
  es.reserve(entries_.size());
  for (const auto& e : entries_) es.push_back({e.name, e.dtype, e.shape, e.bytes.size()});
  return make_header(metadata_, es);
}

std::string make_header(const std::map<std::string, std::string>& metadata, const std::vector<HeaderEntry>& entries) {
  nlohmann::ordered_json h;
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  meta[kFormatVersionKey] = "1";
  for (const auto& [k, v] : metadata) meta[k] = v;
  h["__metadata__"] = meta;
  std::uint64_t off = 0;
  for (const auto& e : entries) {
    h[e.name] = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {off, off + e.bytes}}};
    off += e.bytes;
  }
  std::string s = h.dump();
  s.append((8 - s.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  return s;
}

std::vector<std::uint8_t> SafetensorsWriter::to_bytes() const {
  const std::string h = header();
  std::size_t total = 8 + h.size();
  for (const auto& e : entries_) total += e.bytes.size();
  std::vector<std::uint8_t> out(total);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(h.size()) >> (8 * i));
  std::memcpy(out.data() + 8, h.data(), h.size());
  std::size_t pos = 8 + h.size();
  for (const auto& e : entries_) {
    if (!e.bytes.empty()) std::memcpy(out.data() + pos, e.bytes.data(), e.bytes.size());
    pos += e.bytes.size();
  }
  return out;
}

void SafetensorsWriter::write(const std::string& path) const {
  const std::string h = header();
  std::uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(h.size()) >> (8 * i));
  AtomicWriter w(path);
  w.write(len, 8);
  w.write(h.data(), h.size());
  for (const auto& e : entries_) w.write(e.bytes.data(), e.bytes.size());
  w.commit();
}

}  // namespace mfqat::ckpt
