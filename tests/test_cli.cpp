// Runs the real `mfqat` binary: round trips through .npy and raw files, and each bad input gives a
// one-line error, a non-zero exit and no output file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mfqat/ckpt/file.h"
#include "mfqat/ckpt/npy.h"
#include "mfqat/ckpt/safetensors.h"
#include "mfqat/convert/slice.h"
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
  for (const char* a : {"--help", "formats --help", "quantize --help", "compare --help", "convert --help",
                        "dequantize --help", "inspect --help"}) {
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

TEST_F(Cli, PackedCheckpointConvertInspectDequantize) {
  const ckpt::Matrix m = sample(6, 100);
  ckpt::write_npy(path("w.npy"), m);
  ASSERT_EQ(run("quantize --packed -f mxfp8_e4m3 -i " + path("w.npy") + " -o " + path("a.safetensors") + " --name blk.w").rc, 0);
  const auto a = ckpt::SafetensorsFile::open(path("a.safetensors"));
  ASSERT_EQ(a.mx_tensors().size(), 1u);
  const mx::PackedMatrix pa = a.load_mx(a.mx_tensors()[0]);
  const mx::PackedMatrix want = mx::quantize(mx::find_format("mxfp8_e4m3"), m.data.data(), 6, 100);
  EXPECT_EQ(pa.elements, want.elements);
  EXPECT_EQ(pa.scales, want.scales);

  const Result c = run("convert " + path("a.safetensors") + " --to mxfp4 -o " + path("b.safetensors") + " --json");
  ASSERT_EQ(c.rc, 0) << c.err;
  EXPECT_NE(c.out.find("\"method\": \"slice\""), std::string::npos);
  const auto b = ckpt::SafetensorsFile::open(path("b.safetensors"));
  const mx::PackedMatrix pb = b.load_mx(b.mx_tensors()[0]);
  EXPECT_EQ(pb.elements, convert::slice(pa, mx::find_format("mxfp4")).elements);

  const Result i = run("inspect " + path("b.safetensors") + " --json");
  ASSERT_EQ(i.rc, 0);
  EXPECT_NE(i.out.find("\"format\": \"mxfp4_e2m1\""), std::string::npos);
  EXPECT_NE(i.out.find("\"bits_per_weight\""), std::string::npos);
  EXPECT_EQ(run("inspect " + path("b.safetensors")).rc, 0);

  ASSERT_EQ(run("dequantize " + path("b.safetensors") + " -o " + path("d.npy")).rc, 0);
  EXPECT_EQ(ckpt::read_npy(path("d.npy")).data, mx::dequantize(pb));
  ASSERT_EQ(run("dequantize " + path("b.safetensors") + " -o " + path("d.safetensors")).rc, 0);
  const auto d = ckpt::SafetensorsFile::open(path("d.safetensors"));
  EXPECT_EQ(d.load_f32(*d.find("blk.w")), mx::dequantize(pb));
}

TEST_F(Cli, PackedFromSafetensorsWithRegex) {
  ckpt::SafetensorsWriter w;
  const ckpt::Matrix m = sample(4, 64);
  w.add_f32("layers.0.wq", {4, 64}, m.data);
  w.add_f32("layers.0.norm", {64}, std::vector<float>(64, 1.0f));
  w.add_f32("tok_emb", {4, 64}, m.data);
  w.set_metadata("mfqat.model_config", "{}");
  w.write(path("m.safetensors"));
  ASSERT_EQ(run("quantize --packed -f mxint8 -i " + path("m.safetensors") + " -o " + path("q.safetensors") + " --tensors 'layers\\..*\\.wq'").rc, 0);
  const auto q = ckpt::SafetensorsFile::open(path("q.safetensors"));
  ASSERT_EQ(q.mx_tensors().size(), 1u);
  EXPECT_EQ(q.mx_tensors()[0].name, "layers.0.wq");
  EXPECT_EQ(q.find("tok_emb")->dtype, ckpt::DType::F32);  // passed through
  EXPECT_EQ(q.find("layers.0.norm")->dtype, ckpt::DType::F32);
  EXPECT_EQ(q.metadata().at("mfqat.model_config"), "{}");
  expect_failure("quantize --packed -f mxint8 -i " + path("m.safetensors") + " -o " + path("n.safetensors") + " --tensors nomatch",
                 "no 2-D F32 tensor", path("n.safetensors"));
}

TEST_F(Cli, CheckpointBadInputs) {
  const ckpt::Matrix m = sample(2, 64);
  ckpt::write_npy(path("w.npy"), m);
  ASSERT_EQ(run("quantize --packed -f mxint4 -i " + path("w.npy") + " -o " + path("a4.safetensors")).rc, 0);
  const std::string out = path("out.safetensors");
  expect_failure("convert " + path("a4.safetensors") + " --to mxint8 -o " + out, "not lower", out);
  expect_failure("convert " + path("a4.safetensors") + " --to mxfp4 -o " + out, "different families", out);
  expect_failure("convert " + path("a4.safetensors") + " --to mxint9 -o " + out, "mxint9", out);
  expect_failure("convert " + path("missing.safetensors") + " --to mxint2 -o " + out, "missing.safetensors", out);
  // a truncated checkpoint names the file
  auto bytes = ckpt::read_file(path("a4.safetensors"));
  bytes.resize(bytes.size() - 3);
  ckpt::write_file_atomic(path("trunc.safetensors"), bytes.data(), bytes.size());
  expect_failure("inspect " + path("trunc.safetensors"), "trunc.safetensors", out);
  expect_failure("convert " + path("trunc.safetensors") + " --to mxint2 -o " + out, "trunc.safetensors", out);
  expect_failure("dequantize " + path("trunc.safetensors") + " -o " + path("x.npy"), "trunc.safetensors", path("x.npy"));
  // --via-float allows it, with a warning
  const Result r = run("convert " + path("a4.safetensors") + " --to mxfp4 -o " + out + " --via-float");
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.err.find("warning"), std::string::npos);
  EXPECT_TRUE(fs::exists(out));
}

TEST_F(Cli, BenchMeasuresEveryFormatOnTheAnchorThatDerivesItInInterleavedRounds) {
  // two anchors built from the same random weights; each format on the first that derives it
  const Result r = run("bench --synthetic default --anchor mxint8,mxfp8_e4m3 --formats mxint4,mxfp4,fp32 --prompt 4 --tokens 3 --rounds 2 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  std::vector<std::string> seen;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line);
    seen.push_back(j["format"].get<std::string>() + "@" + j["anchor"].get<std::string>());
    EXPECT_EQ(j["rounds"], 2);
    ASSERT_EQ(j["decode_runs"].size(), 2U);
    // the reported figure is the median of the rounds (of two: their mean)
    const double a = j["decode_runs"][0], b = j["decode_runs"][1];
    EXPECT_DOUBLE_EQ(j["decode_tokens_per_s"].get<double>(), 0.5 * (a + b));
    EXPECT_GT(a, 0);
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"mxint4@mxint8", "mxfp4_e2m1@mxfp8_e4m3", "fp32@mxint8"}));
  // a format no anchor derives: one line naming it
  const Result bad = run("bench --synthetic default --anchor mxint8 --formats mxfp4 --tokens 2 --prompt 2");
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.err.find("mxfp4_e2m1"), std::string::npos) << bad.err;
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
  EXPECT_NE(run("bench --synthetic default --anchor mxint9 --tokens 2 --prompt 2").rc, 0);
}
