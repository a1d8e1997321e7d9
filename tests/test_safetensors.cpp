#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <type_traits>
#include <utility>

#include "common.h"
#include "mfqat/ckpt/file.h"
#include "mfqat/ckpt/safetensors.h"

using namespace mfqat;
using namespace mfqat::ckpt;

namespace {

std::vector<std::uint8_t> image(const std::string& header, std::size_t data_bytes, std::int64_t len_override = -1) {
  std::vector<std::uint8_t> b(8 + header.size() + data_bytes, 0);
  const std::uint64_t n = len_override >= 0 ? static_cast<std::uint64_t>(len_override) : header.size();
  for (int i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(n >> (8 * i));
  std::memcpy(b.data() + 8, header.data(), header.size());
  return b;
}

void expect_error(const std::vector<std::uint8_t>& b, const std::string& needle, const std::string& tensor = "") {
  try {
    SafetensorsFile::from_bytes(b, "bad.safetensors");
    FAIL() << "no error, wanted: " << needle;
  } catch (const std::runtime_error& e) {
    const std::string w = e.what();
    EXPECT_EQ(w.rfind("bad.safetensors: ", 0), 0u) << w;
    EXPECT_NE(w.find(needle), std::string::npos) << w;
    if (!tensor.empty()) {
      EXPECT_NE(w.find("tensor '" + tensor + "'"), std::string::npos) << w;
    }
    EXPECT_EQ(w.find('\n'), std::string::npos) << w;
  }
}

SafetensorsWriter sample_writer() {
  SafetensorsWriter w;
  auto x = random_tensor(3 * 70, 1, 1);
  w.add_mx("layers.0.attn.wq", mx::quantize(mx::find_format("mxint8"), x.data(), 3, 70));
  w.add_mx("layers.0.mlp.w1", mx::quantize(mx::find_format("mxfp4"), x.data(), 7, 30));
  w.add_f32("norm.weight", {4}, std::vector<float>{1, 2, 3, 4});
  const std::uint8_t raw[6] = {1, 2, 3, 4, 5, 6};
  w.add("ids", DType::U16, {3}, raw);
  w.set_metadata(kModelConfigKey, "{\"dim\": 64}");
  return w;
}

const std::string kMxMeta = R"("mfqat.mx.w": "{\"format\":\"mxint4\",\"block_size\":32,\"shape\":[2,40],\"scale\":\"e8m0\",\"rounding\":\"even\",\"packing\":\"lsb-first\"}")";

}  // namespace

TEST(Safetensors, RoundTripBytesAndMetadata) {
  const auto bytes = sample_writer().to_bytes();
  EXPECT_EQ((bytes[0] | (bytes[1] << 8)) % 8, 0);  // data 8-byte aligned
  const auto f = SafetensorsFile::from_bytes(bytes, "mem");
  EXPECT_EQ(f.metadata().at(kModelConfigKey), "{\"dim\": 64}");
  EXPECT_EQ(f.metadata().at(kFormatVersionKey), "1");
  ASSERT_EQ(f.mx_tensors().size(), 2u);
  const auto* q = f.find_mx("layers.0.mlp.w1");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->format.name, "mxfp4_e2m1");
  EXPECT_EQ(q->rows, 7);
  EXPECT_EQ(q->cols, 30);
  const auto* n = f.find("norm.weight");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(f.load_f32(*n), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_FALSE(f.is_mx_part(*n));
  EXPECT_TRUE(f.is_mx_part(*q->scales));
  // Re-writing everything that was read, in file order, gives the same bytes.
  SafetensorsWriter w;
  for (const auto& [k, v] : f.metadata()) w.set_metadata(k, v);
  for (const auto& t : f.tensors()) w.add(t.name, t.dtype, t.shape, f.data(t));
  EXPECT_EQ(w.to_bytes(), bytes);
  auto x = random_tensor(3 * 70, 1, 1);
  EXPECT_EQ(f.load_mx(*f.find_mx("layers.0.attn.wq")).elements, mx::quantize(mx::find_format("mxint8"), x.data(), 3, 70).elements);
}

TEST(Safetensors, FileRoundTripThroughMmap) {
  const std::string p = (std::filesystem::temp_directory_path() / ("mfqat_st_" + std::to_string(::getpid()) + ".safetensors")).string();
  const auto w = sample_writer();
  w.write(p);
  EXPECT_EQ(read_file(p), w.to_bytes());
  const auto f = SafetensorsFile::open(p);
  EXPECT_EQ(f.tensors().size(), 6u);
  EXPECT_EQ(f.file_size(), w.to_bytes().size());
  std::filesystem::remove(p);
  EXPECT_THROW(SafetensorsFile::open(p), std::runtime_error);
}

TEST(Safetensors, ZeroSizedTensors) {
  SafetensorsWriter w;
  w.add("empty", DType::F32, {0, 5}, {});
  const auto f = SafetensorsFile::from_bytes(w.to_bytes(), "mem");
  EXPECT_EQ(f.find("empty")->numel(), 0);
}

TEST(Safetensors, BadContainers) {
  expect_error({1, 2, 3}, "truncated file");
  expect_error(image("{}", 0, 1000), "runs past the end");
  expect_error(image("{not json", 0), "not valid JSON");
  expect_error(image("[1, 2]", 0), "not a JSON object");
  expect_error(image(R"({"__metadata__": {"a": 1}})", 0), "not a string");
  expect_error(image(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 4), "past the end", "t");
  expect_error(image(R"({"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8), "does not match", "t");
  expect_error(image(R"({"t": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}})", 8), "unknown dtype", "t");
  expect_error(image(R"({"t": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8), "bad shape", "t");
  expect_error(image(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", 8), "reversed", "t");
  expect_error(image(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", 8), "data_offsets", "t");
  expect_error(image(R"({"t": {"dtype": "F32", "shape": [2]}})", 8), "data_offsets", "t");
  expect_error(image(R"({"t": [1]})", 8), "not an object", "t");
  expect_error(image(R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                         "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}})", 6), "overlap", "b");
  expect_error(image(R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                         "b": {"dtype": "U8", "shape": [4], "data_offsets": [6, 10]}})", 10), "gap");
  expect_error(image(R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}})", 9), "after the last tensor");
  expect_error(image(R"({"t": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 8]}})", 8), "too large", "t");
}

TEST(Safetensors, BadMxTensors) {
  const std::string el = R"("w.mx_elements": {"dtype": "U8", "shape": [2, 20], "data_offsets": [0, 40]})";
  const std::string sc = R"("w.mx_scales": {"dtype": "U8", "shape": [2, 2], "data_offsets": [40, 44]})";
  // the well-formed file first
  EXPECT_EQ(SafetensorsFile::from_bytes(image("{\"__metadata__\": {" + kMxMeta + "}, " + el + ", " + sc + "}", 44), "ok").mx_tensors().size(), 1u);
  auto meta_with = [](const std::string& from, const std::string& to) {
    std::string m = kMxMeta;
    m.replace(m.find(from), from.size(), to);
    return m;
  };
  expect_error(image("{\"__metadata__\": {" + meta_with("mxint4", "mxint9") + "}, " + el + ", " + sc + "}", 44), "mxint9", "w");
  expect_error(image("{\"__metadata__\": {" + meta_with("e8m0", "fp32") + "}, " + el + ", " + sc + "}", 44), "scale rule", "w");
  expect_error(image("{\"__metadata__\": {" + meta_with("[2,40]", "[2]") + "}, " + el + ", " + sc + "}", 44), "[rows, cols]", "w");
  expect_error(image("{\"__metadata__\": {" + meta_with("32", "\\\"x\\\"") + "}, " + el + ", " + sc + "}", 44), "bad MX metadata", "w");
  expect_error(image("{\"__metadata__\": {" + kMxMeta + "}, " + el + "}", 40), "is missing", "w");
  const std::string sc_bad = R"("w.mx_scales": {"dtype": "U8", "shape": [2, 1], "data_offsets": [40, 42]})";
  expect_error(image("{\"__metadata__\": {" + kMxMeta + "}, " + el + ", " + sc_bad + "}", 42), "scale tensor shape [2, 1], expected [2, 2]", "w.mx_scales");
  const std::string el_bad = R"("w.mx_elements": {"dtype": "I8", "shape": [2, 20], "data_offsets": [0, 40]})";
  expect_error(image("{\"__metadata__\": {" + kMxMeta + "}, " + el_bad + ", " + sc + "}", 44), "expected U8", "w.mx_elements");
  const std::string el_short = R"("w.mx_elements": {"dtype": "U8", "shape": [2, 19], "data_offsets": [0, 38]})";
  const std::string sc_moved = R"("w.mx_scales": {"dtype": "U8", "shape": [2, 2], "data_offsets": [38, 42]})";
  expect_error(image("{\"__metadata__\": {" + kMxMeta + "}, " + el_short + ", " + sc_moved + "}", 42), "does not fit", "w.mx_elements");
}

TEST(Safetensors, WriterRejectsBadTensors) {
  SafetensorsWriter w;
  const std::uint8_t b[4] = {};
  EXPECT_THROW(w.add("x", DType::F32, {2}, b), std::invalid_argument);
  w.add("x", DType::F32, {1}, b);
  EXPECT_THROW(w.add("x", DType::F32, {1}, b), std::invalid_argument);
  EXPECT_THROW(w.add("__metadata__", DType::U8, {4}, b), std::invalid_argument);
}

// SafetensorsFile holds pointers into its own tensor list (MxTensorInfo::elements / ::scales):
// it must not be copyable, and a move must leave those pointers valid in the new owner.
static_assert(!std::is_copy_constructible_v<SafetensorsFile>);
static_assert(!std::is_copy_assignable_v<SafetensorsFile>);
static_assert(std::is_nothrow_move_constructible_v<SafetensorsFile>);
static_assert(std::is_nothrow_move_assignable_v<SafetensorsFile>);

TEST(Safetensors, MovesKeepMxPointersValid) {
  const auto bytes = sample_writer().to_bytes();
  auto expect_consistent = [&](const SafetensorsFile& f) {
    ASSERT_EQ(f.mx_tensors().size(), 2u);
    for (const auto& m : f.mx_tensors()) {
      // the parts point into this object's own tensor list, not a moved-from one
      EXPECT_EQ(m.elements, f.find(m.name + kMxElementsSuffix)) << m.name;
      EXPECT_EQ(m.scales, f.find(m.name + kMxScalesSuffix)) << m.name;
      EXPECT_TRUE(f.is_mx_part(*m.elements));
      EXPECT_EQ(f.data(*m.scales).size(), static_cast<std::size_t>(m.rows * m.format.blocks_per_row(m.cols)));
    }
    auto x = random_tensor(3 * 70, 1, 1);
    EXPECT_EQ(f.load_mx(*f.find_mx("layers.0.attn.wq")).elements, mx::quantize(mx::find_format("mxint8"), x.data(), 3, 70).elements);
  };
  auto a = SafetensorsFile::from_bytes(bytes, "mem");
  const TensorInfo* el = a.find_mx("layers.0.mlp.w1")->elements;
  SafetensorsFile b(std::move(a));
  expect_consistent(b);
  EXPECT_EQ(b.find_mx("layers.0.mlp.w1")->elements, el);  // the same storage, now b's
  SafetensorsFile c = SafetensorsFile::from_bytes(sample_writer().to_bytes(), "other");
  c = std::move(b);
  expect_consistent(c);
  EXPECT_EQ(c.name(), "mem");
  EXPECT_EQ(c.find_mx("layers.0.mlp.w1")->elements, el);
}

TEST(Safetensors, MxMetadataFieldsMustAgree) {
  const std::string el = R"("w.mx_elements": {"dtype": "U8", "shape": [2, 20], "data_offsets": [0, 40]})";
  const std::string sc = R"("w.mx_scales": {"dtype": "U8", "shape": [2, 2], "data_offsets": [40, 44]})";
  auto with = [&](const std::string& from, const std::string& to) {
    std::string m = kMxMeta;
    m.replace(m.find(from), from.size(), to);
    return image("{\"__metadata__\": {" + m + "}, " + el + ", " + sc + "}", 44);
  };
  const std::string ok = R"(\"packing\":\"lsb-first\")";
  EXPECT_NO_THROW(SafetensorsFile::from_bytes(with(ok, ok + R"(,\"element_bits\":4,\"axis\":\"last\")"), "ok"));
  expect_error(with(ok, ok + R"(,\"element_bits\":8)"), "element_bits 8 disagrees with mxint4 (4 bits)", "w");
  expect_error(with(ok, ok + R"(,\"element_bits\":\"4\")"), "element_bits", "w");
  expect_error(with(ok, ok + R"(,\"axis\":\"first\")"), "unsupported MX axis", "w");
  // numbers that get<int>() would have truncated to a valid value
  expect_error(with("32", "32.5"), "block_size 32.5 is not an integer", "w");
  expect_error(with("32", "4294967328"), "block_size 4294967328 is out of range", "w");
  expect_error(with("32", "0"), "out of range", "w");
  expect_error(with("[2,40]", "[2.5,40]"), "bad MX shape", "w");
}
