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
#include "mfqat/mx/stats.h"

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

TEST_F(Cli, ComparePrintsTheLibrarysErrorsForTheSameMatrixOrderedByBits) {
  // JSON: every number is what the library gives for the same matrix (fake_quantize with the
  // saturation mask, then error_stats), the errors are finite and fall as the bits rise within
  // each family (each step adds at least one mantissa bit, about 6 dB; the test asks for 3), and
  // mse, SQNR and max|err| agree with a direct double computation.
  const std::vector<std::string> names = {"mxint2", "mxint4", "mxint8", "mxfp4", "mxfp6_e3m2", "mxfp8_e4m3"};
  const Result r = run("compare --formats mxint2,mxint4,mxint8,mxfp4,mxfp6_e3m2,mxfp8_e4m3 --rows 8 --cols 96 --seed 3 --json --write-input " +
                       path("w.npy"));
  ASSERT_EQ(r.rc, 0) << r.err;
  const ckpt::Matrix m = ckpt::read_npy(path("w.npy"));
  ASSERT_EQ(m.rows, 8);
  ASSERT_EQ(m.cols, 96);
  EXPECT_EQ(m.data, mx::synthetic_weights(8, 96, 3));  // the documented synthetic matrix
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), names.size()) << r.out;
  std::vector<double> mse(names.size()), sqnr(names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    const mx::Format f = mx::find_format(names[i]);
    SCOPED_TRACE(f.name);
    std::vector<float> y(m.data.size());
    std::vector<std::uint8_t> sat(m.data.size());
    mx::fake_quantize(f, m.data.data(), m.rows, m.cols, y.data(), {}, sat.data());
    const mx::ErrorStats s = mx::error_stats(m.data.data(), y.data(), static_cast<std::int64_t>(y.size()), sat.data());
    const auto& row = j[i];
    EXPECT_EQ(row["format"], f.name);
    EXPECT_EQ(row["bits_per_weight"].get<double>(), f.bits + 8.0 / 32);
    ASSERT_TRUE(row["sqnr_db"].is_number()) << row;  // "inf" only for an exact quantization
    mse[i] = row["mse"].get<double>();
    sqnr[i] = row["sqnr_db"].get<double>();
    EXPECT_EQ(mse[i], s.mse);
    EXPECT_EQ(sqnr[i], s.sqnr_db);
    EXPECT_EQ(row["max_abs_err"].get<double>(), s.max_abs_err);
    EXPECT_EQ(row["saturated_fraction"].get<double>(), s.saturated_fraction);
    double se = 0, sx = 0, mx_err = 0;
    for (std::size_t k = 0; k < y.size(); ++k) {
      const double d = static_cast<double>(y[k]) - m.data[k];
      se += d * d;
      sx += static_cast<double>(m.data[k]) * m.data[k];
      mx_err = std::max(mx_err, std::fabs(d));
    }
    EXPECT_NEAR(mse[i], se / static_cast<double>(y.size()), 1e-12 * mse[i]);
    EXPECT_NEAR(sqnr[i], 10 * std::log10(sx / se), 1e-9);
    EXPECT_EQ(row["max_abs_err"].get<double>(), mx_err);
    EXPECT_TRUE(std::isfinite(mse[i]) && mse[i] > 0);
    EXPECT_GE(row["saturated_fraction"].get<double>(), 0.0);
    EXPECT_LE(row["saturated_fraction"].get<double>(), 1.0);
  }
  for (std::size_t i : {std::size_t{1}, std::size_t{2}, std::size_t{4}, std::size_t{5}}) {  // more bits, same family
    EXPECT_LT(mse[i], mse[i - 1]) << names[i] << " vs " << names[i - 1];
    EXPECT_GT(sqnr[i], sqnr[i - 1] + 3.0) << names[i] << " vs " << names[i - 1];
  }
  // The table of the same matrix read back with --input: the same numbers to the printed digits.
  const Result t = run("compare --formats mxint2,mxint4,mxint8 --input " + path("w.npy"));
  ASSERT_EQ(t.rc, 0) << t.err;
  std::istringstream lines(t.out);
  std::string line;
  std::getline(lines, line);
  EXPECT_EQ(line, "8x96 matrix, rounding even, block 32");
  std::getline(lines, line);  // the column names
  for (std::size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(std::getline(lines, line)) << t.out;
    std::istringstream fields(line);
    std::string name;
    double bpw = 0, e = 0, db = 0, maxe = 0, satp = 0;
    fields >> name >> bpw >> e >> db >> maxe >> satp;
    ASSERT_FALSE(fields.fail()) << line;
    EXPECT_EQ(name, names[i]);
    EXPECT_EQ(bpw, j[i]["bits_per_weight"].get<double>());
    EXPECT_NEAR(e, mse[i], 5e-5 * mse[i]) << line;  // %.4e
    EXPECT_NEAR(db, sqnr[i], 0.0051) << line;       // %.2f
    EXPECT_NEAR(maxe, j[i]["max_abs_err"].get<double>(), 5e-5 * maxe) << line;
    EXPECT_NEAR(satp, 100 * j[i]["saturated_fraction"].get<double>(), 5.1e-5) << line;
  }
  EXPECT_FALSE(std::getline(lines, line)) << "one line per format: " << line;
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
