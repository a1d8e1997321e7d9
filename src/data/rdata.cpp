#include "mfqat/data/rdata.h"

#include <zlib.h>

#include <cstring>
#include <stdexcept>

#include "mfqat/ckpt/file.h"

namespace mfqat::data {

std::vector<std::string> RObject::names() const {
  std::vector<std::string> out;
  const auto it = attributes.find("names");
  if (it == attributes.end()) return out;
  for (const auto& s : it->second.strings) out.push_back(s.value_or("NA"));
  return out;
}

std::vector<std::uint8_t> inflate_zlib(const std::uint8_t* data, std::size_t size, std::size_t expected, const std::string& what) {
  if (expected > (std::size_t{1} << 31)) throw std::runtime_error(what + ": implausible uncompressed size " + std::to_string(expected));
  std::vector<std::uint8_t> out(expected);
  uLongf n = static_cast<uLongf>(expected);
  const int rc = ::uncompress(out.data(), &n, data, static_cast<uLong>(size));
  // uncompress reports Z_BUF_ERROR/Z_DATA_ERROR when the stream is longer, shorter or corrupt.
  if (rc != Z_OK || n != expected) throw std::runtime_error(what + ": corrupt zlib stream (zlib error " + std::to_string(rc) + ")");
  return out;
}

std::vector<std::uint8_t> gunzip(const std::vector<std::uint8_t>& gz, const std::string& what) {
  z_stream zs{};
  if (::inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw std::runtime_error(what + ": inflateInit2 failed");
  std::vector<std::uint8_t> out;
  std::uint8_t buf[1 << 16];
  zs.next_in = const_cast<Bytef*>(gz.data());
  zs.avail_in = static_cast<uInt>(gz.size());
  int rc;
  do {
    zs.next_out = buf;
    zs.avail_out = sizeof buf;
    rc = ::inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      ::inflateEnd(&zs);
      throw std::runtime_error(what + ": corrupt gzip data");
    }
    out.insert(out.end(), buf, buf + (sizeof buf - zs.avail_out));
    if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      ::inflateEnd(&zs);
      throw std::runtime_error(what + ": truncated gzip data");
    }
  } while (rc != Z_STREAM_END);
  ::inflateEnd(&zs);
  return out;
}

namespace {

class Reader {
 public:
  Reader(const std::vector<std::uint8_t>& b, const std::string& what) : b_(b), what_(what) {}

  RObject read_top() {
    if (b_.size() < 2 || b_[0] != 'X' || b_[1] != '\n') fail("not an R XDR serialization (need \"X\\n\")");
    pos_ = 2;
    const std::int32_t version = read_int();
    read_int();  // writer R version
    read_int();  // minimal reader version
    if (version == 3) {
      const std::int32_t n = read_int();
      if (n < 0 || n > 64) fail("bad native encoding length");
      need(static_cast<std::size_t>(n));
      pos_ += static_cast<std::size_t>(n);
    } else if (version != 2) {
      fail("unsupported serialization version " + std::to_string(version));
    }
    return read_item(0);
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw std::runtime_error(what_ + ": " + why + " (at byte " + std::to_string(pos_) + ")");
  }
  void need(std::size_t n) const {
    if (n > b_.size() - pos_) fail("truncated R data");
  }
  std::int32_t read_int() {
    need(4);
    const std::uint32_t v = (std::uint32_t{b_[pos_]} << 24) | (std::uint32_t{b_[pos_ + 1]} << 16) |
                            (std::uint32_t{b_[pos_ + 2]} << 8) | b_[pos_ + 3];
    pos_ += 4;
    return static_cast<std::int32_t>(v);
  }
  double read_double() {
    need(8);
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | b_[pos_ + i];
    pos_ += 8;
    double d;
    std::memcpy(&d, &v, 8);
    return d;
  }
  std::size_t read_length() {
    const std::int32_t n = read_int();
    if (n == -1) {  // long vector: two more ints
      const std::uint64_t hi = static_cast<std::uint32_t>(read_int()), lo = static_cast<std::uint32_t>(read_int());
      const std::uint64_t len = (hi << 32) | lo;
      if (len > b_.size()) fail("implausible vector length");
      return static_cast<std::size_t>(len);
    }
    if (n < 0) fail("negative length");
    return static_cast<std::size_t>(n);
  }
  std::optional<std::string> read_charsxp_body() {
    const std::int32_t n = read_int();
    if (n == -1) return std::nullopt;  // NA_STRING
    if (n < 0) fail("bad string length");
    need(static_cast<std::size_t>(n));
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }
  void read_attributes(RObject* o, int depth) {
    RObject attrs = read_item(depth + 1);
    if (attrs.type != RObject::Pairlist) fail("attributes are not a pairlist");
    for (std::size_t i = 0; i < attrs.items.size(); ++i) o->attributes[attrs.tags[i]] = std::move(attrs.items[i]);
  }

  RObject read_item(int depth) {
    if (depth > 64) fail("nesting too deep");
    const std::uint32_t flags = static_cast<std::uint32_t>(read_int());
    const int type = static_cast<int>(flags & 0xff);
    const bool has_attr = flags & (1u << 9);
    RObject o;
    o.type = type;
    switch (type) {
      case 254:  // NILVALUE_SXP
        o.type = RObject::Nil;
        return o;
      case 255: {  // REFSXP: index packed in the flags, or in the next int
        std::uint32_t idx = flags >> 8;
        if (idx == 0) idx = static_cast<std::uint32_t>(read_int());
        if (idx == 0 || idx > refs_.size()) fail("bad reference " + std::to_string(idx));
        return refs_[idx - 1];
      }
      case RObject::Symbol: {
        RObject name = read_item(depth + 1);
        if (name.type != RObject::Char) fail("symbol name is not a CHARSXP");
        o.strings = name.strings;
        refs_.push_back(o);
        return o;
      }
      case RObject::Pairlist: {
        // attributes, tag, car, then cdr (iteratively, to keep deep lists off the stack)
        RObject* cell = &o;
        std::uint32_t f = flags;
        while (true) {
          RObject attrs_holder;
          if (f & (1u << 9)) read_attributes(&attrs_holder, depth);
          std::string tag;
          if (f & (1u << 10)) {
            RObject t = read_item(depth + 1);
            if (t.type != RObject::Symbol) fail("pairlist tag is not a symbol");
            tag = t.strings.empty() ? "" : t.strings[0].value_or("");
          }
          cell->tags.push_back(tag);
          cell->items.push_back(read_item(depth + 1));
          const std::size_t save = pos_;
          const std::uint32_t next = static_cast<std::uint32_t>(read_int());
          if ((next & 0xff) == 254) break;
          if ((next & 0xff) != RObject::Pairlist) {
            pos_ = save;
            fail("unsupported pairlist tail");
          }
          f = next;
        }
        return o;
      }
      case RObject::Char:
        o.strings.push_back(read_charsxp_body());
        return o;
      case RObject::Logical:
      case RObject::Integer: {
        const std::size_t n = read_length();
        need(n * 4);
        o.ints.reserve(n);
        for (std::size_t i = 0; i < n; ++i) o.ints.push_back(read_int());
        break;
      }
      case RObject::Real: {
        const std::size_t n = read_length();
        need(n * 8);
        for (std::size_t i = 0; i < n; ++i) o.reals.push_back(read_double());
        break;
      }
      case RObject::String: {
        const std::size_t n = read_length();
        need(n * 8);  // at least flags + length per element
        o.strings.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
          const std::uint32_t cf = static_cast<std::uint32_t>(read_int());
          if ((cf & 0xff) != RObject::Char) fail("string element is not a CHARSXP");
          o.strings.push_back(read_charsxp_body());
        }
        break;
      }
      case RObject::List: {
        const std::size_t n = read_length();
        need(n * 4);
        for (std::size_t i = 0; i < n; ++i) o.items.push_back(read_item(depth + 1));
        break;
      }
      default:
        fail("unsupported R object type " + std::to_string(type));
    }
    if (has_attr) read_attributes(&o, depth);
    return o;
  }

  const std::vector<std::uint8_t>& b_;
  std::string what_;
  std::size_t pos_ = 0;
  std::vector<RObject> refs_;
};

}  // namespace

RObject unserialize(const std::vector<std::uint8_t>& bytes, const std::string& what) {
  Reader r(bytes, what);
  return r.read_top();
}

std::map<std::string, std::vector<std::string>> read_lazyload_strings(const std::string& rdx_path, const std::string& rdb_path) {
  const RObject index = unserialize(gunzip(ckpt::read_file(rdx_path), rdx_path), rdx_path);
  if (index.type != RObject::List) throw std::runtime_error(rdx_path + ": index is not a list");
  const auto top = index.names();
  const RObject* vars = nullptr;
  for (std::size_t i = 0; i < top.size() && i < index.items.size(); ++i) {
    if (top[i] == "variables") vars = &index.items[i];
  }
  if (!vars || vars->type != RObject::List) throw std::runtime_error(rdx_path + ": index has no 'variables' list");
  const std::vector<std::uint8_t> rdb = ckpt::read_file(rdb_path);
  const auto names = vars->names();
  std::map<std::string, std::vector<std::string>> out;
  for (std::size_t i = 0; i < names.size() && i < vars->items.size(); ++i) {
    const RObject& loc = vars->items[i];
    if (loc.type != RObject::Integer || loc.ints.size() != 2 || loc.ints[0] < 0 || loc.ints[1] < 4 ||
        static_cast<std::size_t>(loc.ints[0]) + static_cast<std::size_t>(loc.ints[1]) > rdb.size()) {
      throw std::runtime_error(rdx_path + ": bad location for variable '" + names[i] + "'");
    }
    const std::uint8_t* blob = rdb.data() + loc.ints[0];
    const std::size_t len = (std::size_t{blob[0]} << 24) | (std::size_t{blob[1]} << 16) | (std::size_t{blob[2]} << 8) | blob[3];
    const std::string what = rdb_path + " [" + names[i] + "]";
    const RObject v = unserialize(inflate_zlib(blob + 4, static_cast<std::size_t>(loc.ints[1]) - 4, len, what), what);
    if (v.type != RObject::String) continue;
    std::vector<std::string> lines;
    lines.reserve(v.strings.size());
    for (const auto& s : v.strings) lines.push_back(s.value_or(""));
    out[names[i]] = std::move(lines);
  }
  return out;
}

}  // namespace mfqat::data
