#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "mfqat/ckpt/file.h"
#include "mfqat/ckpt/npy.h"

using namespace mfqat::ckpt;

namespace {

std::vector<std::uint8_t> npy_bytes(const std::string& header_dict, std::size_t data_bytes, int version = 1) {
  std::string h = header_dict;
  const std::size_t pre = version == 1 ? 10 : 12;
  h.append((64 - (pre + h.size() + 1) % 64) % 64, ' ');
  h.push_back('\n');
  std::vector<std::uint8_t> b = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<std::uint8_t>(version), 0};
  if (version == 1) {
    b.push_back(static_cast<std::uint8_t>(h.size()));
    b.push_back(static_cast<std::uint8_t>(h.size() >> 8));
  } else {
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(h.size() >> (8 * i)));
  }
  b.insert(b.end(), h.begin(), h.end());
  for (std::size_t i = 0; i < data_bytes; ++i) b.push_back(0);
  return b;
}

void expect_error(const std::vector<std::uint8_t>& b, const std::string& needle) {
  try {
    parse_npy(b, "in.npy");
    FAIL() << "no error, wanted " << needle;
  } catch (const std::runtime_error& e) {
    const std::string w = e.what();
    EXPECT_EQ(w.rfind("in.npy: ", 0), 0u) << w;
    EXPECT_NE(w.find(needle), std::string::npos) << w;
    EXPECT_EQ(w.find('\n'), std::string::npos) << "one line: " << w;
  }
}

}  // namespace

TEST(Npy, RoundTrip) {
  Matrix m;
  m.rows = 3;
  m.cols = 5;
  for (int i = 0; i < 15; ++i) m.data.push_back(static_cast<float>(i) * 0.5f - 2.0f);
  const auto b = encode_npy(m);
  EXPECT_EQ((b.size() - 60) % 64, 0u);  // data 64-byte aligned
  const Matrix r = parse_npy(b, "x");
  EXPECT_EQ(r.rows, 3);
  EXPECT_EQ(r.cols, 5);
  EXPECT_EQ(r.data, m.data);
}

TEST(Npy, NumpyStyleHeaders) {
  // As written by numpy.save: 1-D, 2-D, version 2, double quotes.
  EXPECT_EQ(parse_npy(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", 20), "a").cols, 5);
  const Matrix m = parse_npy(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24, 2), "b");
  EXPECT_EQ(m.rows, 2);
  EXPECT_EQ(m.cols, 3);
  EXPECT_EQ(parse_npy(npy_bytes("{\"shape\": (4, 1), \"fortran_order\": False, \"descr\": \"<f4\"}", 16), "c").rows, 4);
}

TEST(Npy, BadInputs) {
  expect_error({'n', 'o', 'p', 'e', 0, 0, 0, 0, 0, 0, 0}, "bad magic");
  auto trunc = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24);
  trunc.resize(30);
  expect_error(trunc, "truncated");
  expect_error(npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 48), "not float32");
  expect_error(npy_bytes("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", 24), "not float32");
  expect_error(npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24), "fortran_order");
  expect_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }", 96), "3 dimensions");
  expect_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20), "does not match");
  expect_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 28), "does not match");
  expect_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", 24), "malformed shape");
  expect_error(npy_bytes("{'descr': '<f4', 'fortran_order': False}", 24), "no 'shape'");
  expect_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999, 99999999), }", 0), "too large");
  auto v9 = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4);
  v9[6] = 9;
  expect_error(v9, "version 9");
}

TEST(AtomicFile, CommitReplacesAndAbortLeavesNothing) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("mfqat_atomic_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string p = (dir / "f.bin").string();
  write_file_atomic(p, "old", 3);
  {
    AtomicWriter w(p);
    w.write("new-but-aborted", 15);
  }  // destroyed without commit
  EXPECT_EQ(read_file(p), (std::vector<std::uint8_t>{'o', 'l', 'd'}));
  int files = 0;
  for (auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);  // no temp file left behind
  write_file_atomic(p, "new", 3);
  EXPECT_EQ(read_file(p), (std::vector<std::uint8_t>{'n', 'e', 'w'}));
  EXPECT_THROW(write_file_atomic((dir / "no/such/dir/x").string(), "a", 1), std::runtime_error);
  EXPECT_THROW(read_file((dir / "missing").string()), std::runtime_error);
  fs::remove_all(dir);
}
