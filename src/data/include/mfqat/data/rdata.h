// Reader for R's serialization format (XDR, versions 2 and 3) and lazy-load databases
// (.rdx index + .rdb blobs), enough to extract the character vectors that R data packages ship
// (e.g. Debian's r-cran-janeaustenr). No R needed.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mfqat::data {

// One R object. Only the types data packages use are supported; others are an error.
struct RObject {
  enum Type : int { Nil = 254, Symbol = 1, Pairlist = 2, Char = 9, Logical = 10, Integer = 13, Real = 14, String = 16, List = 19 };
  int type = Nil;
  std::vector<std::int32_t> ints;                  // Integer, Logical
  std::vector<double> reals;                       // Real
  std::vector<std::optional<std::string>> strings;  // String (nullopt = NA); Char/Symbol: one entry
  std::vector<RObject> items;                      // List, Pairlist values
  std::vector<std::string> tags;                   // Pairlist tags
  std::map<std::string, RObject> attributes;
  // names(x) as strings, empty when absent
  std::vector<std::string> names() const;
};

// Decompressors (zlib streams and gzip files). Throw std::runtime_error naming `what`.
std::vector<std::uint8_t> inflate_zlib(const std::uint8_t* data, std::size_t size, std::size_t expected, const std::string& what);
std::vector<std::uint8_t> gunzip(const std::vector<std::uint8_t>& gz, const std::string& what);

// Unserializes one R object from an XDR serialization ("X\n" header). Throws
// std::runtime_error("WHAT: reason") on anything malformed or unsupported.
RObject unserialize(const std::vector<std::uint8_t>& bytes, const std::string& what);

// A lazy-load database: `rdx` is the gzip'd index, `rdb` the blobs (4-byte big-endian length +
// zlib stream each). Returns every variable that is a character vector, by name.
std::map<std::string, std::vector<std::string>> read_lazyload_strings(const std::string& rdx_path, const std::string& rdb_path);

}  // namespace mfqat::data
