// What the data-set fuzz targets (fuzz_rdata, fuzz_idx, fuzz_gzip) do with one input, shared with
// the unit test that replays their seed corpora and regressions (tests/test_data.cpp). As in
// harness.h: each function returns or throws std::runtime_error (one line); anything else
// (InvariantBroken included, see invariant.h) is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "invariant.h"
#include "mfqat/data/idx.h"
#include "mfqat/data/rdata.h"

namespace mfqat::fuzz {

namespace detail {
inline std::size_t walk(const data::RObject& o, int depth) {
  require(depth <= 200, "nesting depth");  // the reader limits nesting to 64
  std::size_t n = o.ints.size() + o.reals.size() + o.strings.size() + o.names().size();
  require(o.type != data::RObject::Pairlist || o.tags.size() == o.items.size(), "pairlist tags");
  for (const auto& i : o.items) n += walk(i, depth + 1);
  for (const auto& [k, a] : o.attributes) n += k.size() + walk(a, depth + 1);
  return n;
}
}  // namespace detail

// R's XDR unserializer (the decoded .rdx index and .rdb blobs of a lazy-load database).
inline void rdata(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  try {
    const data::RObject o = data::unserialize(bytes, name);
    volatile std::size_t sink = detail::walk(o, 0);
    (void)sink;
  } catch (const std::exception& e) {
    check_one_line(e);
    throw;
  }
}

// The IDX reader; input starting with the gzip magic is gunzipped first, as read_idx does for .gz.
inline void idx(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  try {
    const bool gz = bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
    const data::IdxArray a = data::parse_idx(gz ? data::gunzip(bytes, name) : bytes, name);
    std::uint64_t n = 1;
    for (auto d : a.dims) n *= static_cast<std::uint64_t>(d);
    require(!a.dims.empty() && a.dims.size() <= 4 && n == a.values.size(), "IDX dimensions");
  } catch (const std::exception& e) {
    check_one_line(e);
    throw;
  }
}

// gunzip, and the zlib blobs of an .rdb file (4-byte big-endian uncompressed length + zlib
// stream) through inflate_zlib. The length is capped at 4 MiB here: inflate_zlib allocates the
// length it is given (up to 2 GiB) before inflating, which would only exhaust the fuzzer's memory.
inline void gzip(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  try {
    if (bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) {
      volatile std::size_t sink = data::gunzip(bytes, name).size();
      (void)sink;
      return;
    }
    if (bytes.size() < 4) throw std::runtime_error(name + ": shorter than an .rdb blob header");
    const std::size_t len = (std::size_t{bytes[0]} << 24) | (std::size_t{bytes[1]} << 16) | (std::size_t{bytes[2]} << 8) | bytes[3];
    if (len > (std::size_t{4} << 20)) throw std::runtime_error(name + ": blob length over the fuzzing cap");
    const auto out = data::inflate_zlib(bytes.data() + 4, bytes.size() - 4, len, name);
    require(out.size() == len, "inflated size");
  } catch (const std::exception& e) {
    check_one_line(e);
    throw;
  }
}

}  // namespace mfqat::fuzz
