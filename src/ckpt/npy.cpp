#include "mfqat/ckpt/npy.h"

#include <cstring>
#include <limits>
#include <stdexcept>
#include <string_view>

#include "mfqat/ckpt/file.h"

namespace mfqat::ckpt {
namespace {

static_assert(std::numeric_limits<float>::is_iec559, "float must be IEEE binary32");

[[noreturn]] void bad(const std::string& name, const std::string& why) {
  throw std::runtime_error(name + ": " + why);
}

std::size_t skip_ws(std::string_view s, std::size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')) ++i;
  return i;
}

// Value text after `'key':` in the header dict, up to the matching end (',' at depth 0 or '}').
std::string_view dict_value(std::string_view h, std::string_view key, const std::string& name) {
  std::size_t k = std::string::npos;
  for (const char q : {'\'', '"'}) {
    const std::string pat = std::string(1, q) + std::string(key) + std::string(1, q);
    k = h.find(pat);
    if (k != std::string::npos) {
      k += pat.size();
      break;
    }
  }
  if (k == std::string::npos) bad(name, "npy header has no '" + std::string(key) + "'");
  k = skip_ws(h, k);
  if (k >= h.size() || h[k] != ':') bad(name, "malformed npy header near '" + std::string(key) + "'");
  k = skip_ws(h, k + 1);
  std::size_t e = k;
  int depth = 0;
  while (e < h.size()) {
    const char c = h[e];
    if (c == '(' || c == '[') ++depth;
    if (c == ')' || c == ']') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
    ++e;
  }
  if (e >= h.size()) bad(name, "malformed npy header");
  std::size_t end = e;
  while (end > k && (h[end - 1] == ' ')) --end;
  return h.substr(k, end - k);
}

}  // namespace

Matrix parse_npy(const std::vector<std::uint8_t>& b, const std::string& name) {
  static const char kMagic[] = "\x93NUMPY";
  if (b.size() < 10 || std::memcmp(b.data(), kMagic, 6) != 0) bad(name, "not a .npy file (bad magic)");
  const int major = b[6];
  std::size_t hlen, hstart;
  if (major == 1) {
    hlen = b[8] | (static_cast<std::size_t>(b[9]) << 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) bad(name, "truncated .npy header");
    hlen = b[8] | (static_cast<std::size_t>(b[9]) << 8) | (static_cast<std::size_t>(b[10]) << 16) |
           (static_cast<std::size_t>(b[11]) << 24);
    hstart = 12;
  } else {
    bad(name, "unsupported .npy version " + std::to_string(major));
  }
  if (hlen > b.size() - hstart) bad(name, "truncated .npy header");
  const std::string_view h(reinterpret_cast<const char*>(b.data()) + hstart, hlen);
  if (h.find('{') == std::string::npos) bad(name, "malformed npy header (no dict)");

  const std::string_view descr = dict_value(h, "descr", name);
  if (descr != "'<f4'" && descr != "\"<f4\"") {
    bad(name, "dtype " + printable(descr) + " is not float32 little-endian ('<f4')");
  }
  const std::string_view fo = dict_value(h, "fortran_order", name);
  if (fo != "False") bad(name, "fortran_order arrays are not supported (need C order)");
  const std::string_view shp = dict_value(h, "shape", name);
  if (shp.size() < 2 || shp.front() != '(' || shp.back() != ')') bad(name, "malformed shape " + printable(shp));
  std::vector<std::int64_t> dims;
  std::size_t i = 1;
  while (true) {
    i = skip_ws(shp, i);
    if (i >= shp.size() - 1) break;
    std::int64_t v = 0;
    std::size_t digits = 0;
    while (i < shp.size() && shp[i] >= '0' && shp[i] <= '9') {
      if (v > (std::int64_t{1} << 40)) bad(name, "shape dimension too large");
      v = v * 10 + (shp[i] - '0');
      ++i;
      ++digits;
    }
    if (digits == 0) bad(name, "malformed shape " + printable(shp));
    dims.push_back(v);
    i = skip_ws(shp, i);
    if (i < shp.size() && shp[i] == ',') ++i;
  }
  Matrix m;
  if (dims.size() == 1) {
    m.rows = 1;
    m.cols = dims[0];
  } else if (dims.size() == 2) {
    m.rows = dims[0];
    m.cols = dims[1];
  } else {
    bad(name, "expected a 1-D or 2-D array, got " + std::to_string(dims.size()) + " dimensions");
  }
  const std::size_t data_off = hstart + hlen;
  const unsigned __int128 need = static_cast<unsigned __int128>(m.rows) * static_cast<unsigned __int128>(m.cols) * 4u;
  if (need != b.size() - data_off) {
    bad(name, "data size " + std::to_string(b.size() - data_off) + " bytes does not match shape (" +
                  std::to_string(m.rows) + ", " + std::to_string(m.cols) + ") of float32");
  }
  m.data.resize(static_cast<std::size_t>(m.rows * m.cols));
  if (!m.data.empty()) std::memcpy(m.data.data(), b.data() + data_off, m.data.size() * 4);
  return m;
}

Matrix read_npy(const std::string& path) { return parse_npy(read_file(path), path); }

std::vector<std::uint8_t> encode_npy(const Matrix& m) {
  std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(m.rows) + ", " +
                  std::to_string(m.cols) + "), }";
  // Pad so that the data starts on a 64-byte boundary; the header ends with '\n'.
  const std::size_t total = 10 + h.size() + 1;
  h.append((64 - total % 64) % 64, ' ');
  h.push_back('\n');
  std::vector<std::uint8_t> out(10 + h.size() + m.data.size() * 4);
  std::memcpy(out.data(), "\x93NUMPY\x01\x00", 8);
  out[8] = static_cast<std::uint8_t>(h.size() & 0xff);
  out[9] = static_cast<std::uint8_t>(h.size() >> 8);
  std::memcpy(out.data() + 10, h.data(), h.size());
  std::memcpy(out.data() + 10 + h.size(), m.data.data(), m.data.size() * 4);
  return out;
}

void write_npy(const std::string& path, const Matrix& m) {
  const auto bytes = encode_npy(m);
  write_file_atomic(path, bytes.data(), bytes.size());
}

Matrix read_raw_f32(const std::string& path, std::int64_t rows, std::int64_t cols) {
  if (rows <= 0 || cols <= 0) bad(path, "shape must be positive");
  auto bytes = read_file(path);
  const unsigned __int128 need = static_cast<unsigned __int128>(rows) * static_cast<unsigned __int128>(cols) * 4u;
  if (need != bytes.size()) {
    bad(path, "file size " + std::to_string(bytes.size()) + " bytes does not match shape " + std::to_string(rows) +
                  "," + std::to_string(cols) + " of float32 (" + std::to_string(static_cast<std::uint64_t>(need)) +
                  " bytes)");
  }
  Matrix m;
  m.rows = rows;
  m.cols = cols;
  m.data.resize(static_cast<std::size_t>(rows * cols));
  std::memcpy(m.data.data(), bytes.data(), bytes.size());
  return m;
}

void write_raw_f32(const std::string& path, const Matrix& m) {
  write_file_atomic(path, m.data.data(), m.data.size() * 4);
}

}  // namespace mfqat::ckpt
