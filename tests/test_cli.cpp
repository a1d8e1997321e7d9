// Runs the real `mfqat` binary: round trips through .npy and raw files, and each bad input gives a
// one-line error, a non-zero exit and no output file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "mfqat/ckpt/file.h"
#include "mfqat/ckpt/npy.h"
#include "mfqat/mx/quantize.h"

namespace fs = std::filesystem;
using namespace mfqat;

namespace {

struct Result {
  int rc;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("mfqat_cli_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& n) const { return (dir_ / n).string(); }
  Result run(const std::string& args) const {
    const std::string cmd = std::string(MFQAT_BIN) + " " + args + " >" + path("stdout.txt") + " 2>" + path("stderr.txt");
    const int st = std::system(cmd.c_str());
    Result r{WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(path("stdout.txt")), slurp(path("stderr.txt"))};
    fs::remove(path("stdout.txt"));
    fs::remove(path("stderr.txt"));
    return r;
  }
  ckpt::Matrix sample(std::int64_t rows, std::int64_t cols) const {
    ckpt::Matrix m;
    m.rows = rows;
    m.cols = cols;
    for (std::int64_t i = 0; i < rows * cols; ++i) m.data.push_back(std::sin(0.37f * static_cast<float>(i)) * (1 + i % 5));
    return m;
  }
  // The CLI must give what the library gives.
  std::vector<float> expected(const ckpt::Matrix& m, const char* fmt, mx::Rounding r = mx::Rounding::NearestEven,
                              std::uint64_t seed = 0) const {
    std::vector<float> y(m.data.size());
    mx::fake_quantize(mx::find_format(fmt), m.data.data(), m.rows, m.cols, y.data(), {r, seed});
    return y;
  }
  void expect_failure(const std::string& args, const std::string& needle, const std::string& out) const {
    const Result r = run(args);
    EXPECT_NE(r.rc, 0) << args;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
    EXPECT_FALSE(fs::exists(out)) << "output left behind by: " << args;
    for (auto& e : fs::directory_iterator(dir_)) {
      EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
    }
  }
  fs::path dir_;
};

}  // namespace

TEST_F(Cli, HelpEverywhere) {
  for (const char* a : {"--help", "formats --help", "quantize --help", "compare --help"}) {
    const Result r = run(a);
    EXPECT_EQ(r.rc, 0) << a;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << a << r.out;
  }
  EXPECT_NE(run("").rc, 0);
  EXPECT_NE(run("nosuchcommand").rc, 0);
}

TEST_F(Cli, Formats) {
  const Result r = run("formats");
  EXPECT_EQ(r.rc, 0);
  for (const auto& f : mx::registry()) EXPECT_NE(r.out.find(f.name), std::string::npos) << f.name;
  const Result j = run("formats --json --also mxfp5_e2m2");
  EXPECT_EQ(j.rc, 0);
  EXPECT_EQ(j.out.front(), '[');
  EXPECT_NE(j.out.find("\"name\": \"mxfp5_e2m2\""), std::string::npos);
  EXPECT_NE(j.out.find("\"max_normal\": 448.0"), std::string::npos);
  EXPECT_NE(run("formats --also mxfp9_e9m9").rc, 0);
}

TEST_F(Cli, Compare) {
  const Result r = run("compare --formats mxint8,mxfp4 --rows 8 --cols 64 --json --write-input " + path("w.npy"));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("\"format\": \"mxint8\""), std::string::npos);
  EXPECT_NE(r.out.find("\"format\": \"mxfp4_e2m1\""), std::string::npos);
  EXPECT_EQ(ckpt::read_npy(path("w.npy")).cols, 64);
  // The same matrix through `quantize --stats` gives the same SQNR as `compare`.
  const Result t = run("compare --formats mxint8 --input " + path("w.npy"));
  ASSERT_EQ(t.rc, 0);
  EXPECT_NE(t.out.find("mxint8"), std::string::npos);
  EXPECT_NE(run("compare --formats mxint8,bogus").rc, 0);
}

TEST_F(Cli, NpyRoundTrip) {
  const ckpt::Matrix m = sample(4, 70);
  ckpt::write_npy(path("in.npy"), m);
  const Result r = run("quantize --format mxfp4 --input " + path("in.npy") + " --output " + path("out.npy") + " --stats");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("sqnr"), std::string::npos);
  const ckpt::Matrix o = ckpt::read_npy(path("out.npy"));
  EXPECT_EQ(o.rows, 4);
  EXPECT_EQ(o.cols, 70);
  EXPECT_EQ(o.data, expected(m, "mxfp4"));
}

TEST_F(Cli, RawRoundTripAndRounding) {
  const ckpt::Matrix m = sample(3, 33);
  ckpt::write_raw_f32(path("in.f32"), m);
  const Result r = run("quantize -f mxint4 -i " + path("in.f32") + " -o " + path("out.f32") +
                       " --shape 3,33 --rounding stochastic --seed 9 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("\"saturated_fraction\""), std::string::npos);
  const ckpt::Matrix o = ckpt::read_raw_f32(path("out.f32"), 3, 33);
  EXPECT_EQ(o.data, expected(m, "mxint4", mx::Rounding::Stochastic, 9));
  // raw in -> npy out
  ASSERT_EQ(run("quantize -f mxfp8_e5m2 -i " + path("in.f32") + " -o " + path("o.npy") + " --shape 3,33").rc, 0);
  EXPECT_EQ(ckpt::read_npy(path("o.npy")).data, expected(m, "mxfp8_e5m2"));
}

TEST_F(Cli, BadInputs) {
  const ckpt::Matrix m = sample(2, 8);
  ckpt::write_npy(path("in.npy"), m);
  ckpt::write_raw_f32(path("in.f32"), m);
  const std::string out = path("out.npy");
  expect_failure("quantize -f mxfp3 -i " + path("in.npy") + " -o " + out, "mxfp3", out);
  expect_failure("quantize -f mxint4 -i " + path("in.f32") + " -o " + out + " --shape 3,8", "does not match shape", out);
  expect_failure("quantize -f mxint4 -i " + path("in.f32") + " -o " + out + " --shape 2x8", "--shape", out);
  expect_failure("quantize -f mxint4 -i " + path("in.npy") + " -o " + out + " --rounding up", "rounding", out);
  expect_failure("quantize -f mxint4 -i " + path("missing.npy") + " -o " + out, "missing.npy", out);
  const std::string junk = path("junk.npy");
  ckpt::write_file_atomic(junk, "this is not numpy", 17);
  expect_failure("quantize -f mxint4 -i " + junk + " -o " + out, "junk.npy", out);
  auto trunc = ckpt::encode_npy(m);
  trunc.resize(trunc.size() - 4);
  ckpt::write_file_atomic(path("trunc.npy"), trunc.data(), trunc.size());
  expect_failure("quantize -f mxint4 -i " + path("trunc.npy") + " -o " + out, "does not match", out);
  expect_failure("quantize -f mxint4 -i " + path("in.npy") + " -o " + path("no/such/dir/out.npy"), "out.npy",
                 path("no/such/dir/out.npy"));
  // An existing output is left untouched by a failing run.
  ckpt::write_file_atomic(out, "keep", 4);
  const Result r = run("quantize -f nope -i " + path("in.npy") + " -o " + out);
  EXPECT_NE(r.rc, 0);
  EXPECT_EQ(ckpt::read_file(out), (std::vector<std::uint8_t>{'k', 'e', 'e', 'p'}));
}
