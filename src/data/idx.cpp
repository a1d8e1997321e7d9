#include "mfqat/data/idx.h"

#include <stdexcept>

#include "mfqat/ckpt/file.h"
#include "mfqat/data/rdata.h"

namespace mfqat::data {

IdxArray parse_idx(const std::vector<std::uint8_t>& b, const std::string& name) {
  if (b.size() < 4 || b[0] != 0 || b[1] != 0) throw std::runtime_error(name + ": not an IDX file (bad magic)");
  if (b[2] != 0x08) throw std::runtime_error(name + ": IDX element type " + std::to_string(b[2]) + " is not unsigned byte");
  const int nd = b[3];
  if (nd < 1 || nd > 4) throw std::runtime_error(name + ": IDX with " + std::to_string(nd) + " dimensions");
  if (b.size() < 4 + 4 * static_cast<std::size_t>(nd)) throw std::runtime_error(name + ": truncated IDX header");
  IdxArray a;
  std::uint64_t n = 1;
  for (int i = 0; i < nd; ++i) {
    const std::uint8_t* p = b.data() + 4 + 4 * i;
    const std::uint32_t d = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
    a.dims.push_back(d);
    n *= d;
    if (n > (std::uint64_t{1} << 34)) throw std::runtime_error(name + ": IDX dimensions too large");
  }
  const std::size_t off = 4 + 4 * static_cast<std::size_t>(nd);
  if (b.size() - off != n) {
    throw std::runtime_error(name + ": IDX data is " + std::to_string(b.size() - off) + " bytes, dimensions say " + std::to_string(n));
  }
  a.values.assign(b.begin() + static_cast<std::ptrdiff_t>(off), b.end());
  return a;
}

IdxArray read_idx(const std::string& path) {
  auto bytes = ckpt::read_file(path);
  if (path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0) bytes = gunzip(bytes, path);
  return parse_idx(bytes, path);
}

}  // namespace mfqat::data
