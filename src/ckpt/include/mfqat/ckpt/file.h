// Whole-file reads and atomic writes (temp file in the same directory, fsync, rename).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mfqat::ckpt {

// Reads a whole file; throws std::runtime_error("PATH: reason").
std::vector<std::uint8_t> read_file(const std::string& path);

// Writes to PATH.tmp.XXXXXX beside PATH, then fsync + rename over PATH on commit(). If the writer
// is destroyed without commit() (an exception, an error), the temp file is removed and PATH is
// left as it was. Throws std::runtime_error naming the path on any I/O error.
class AtomicWriter {
 public:
  explicit AtomicWriter(std::string path);
  ~AtomicWriter();
  AtomicWriter(const AtomicWriter&) = delete;
  AtomicWriter& operator=(const AtomicWriter&) = delete;

  void write(const void* data, std::size_t n);
  void commit();
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
};

// Throws (as AtomicWriter would) unless a file can be written at PATH: a temporary file is
// created beside it and removed. For jobs that write only at the end, to fail at the start.
void check_writable(const std::string& path);

// Text from an input file, fit for a one-line error message: control characters (newlines
// included) become \n, \r, \t or \xNN, and text over `max` bytes is cut, ending in "...".
std::string printable(std::string_view s, std::size_t max = 200);

// A regular file mapped read-only (shared: the mapping lives while a copy of `data` does). An
// empty file maps to size 0 and no data. Throws std::runtime_error("PATH: reason").
struct MappedFile {
  std::shared_ptr<const std::uint8_t> data;
  std::uint64_t size = 0;
};
MappedFile map_file(const std::string& path);

// Convenience: atomically replace PATH with `bytes`.
void write_file_atomic(const std::string& path, const void* data, std::size_t n);

}  // namespace mfqat::ckpt
