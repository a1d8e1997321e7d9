// Model checkpoints without libtorch: config parameters, opening masters and anchors, export.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "mfqat/model/checkpoint.h"

using namespace mfqat;

namespace {

std::string tmp(const std::string& name) { return ::testing::TempDir() + "mfqat_ckpt_" + name; }

model::ModelConfig small() {
  model::ModelConfig c;
  c.lm.dim = 32;
  c.lm.n_layers = 1;
  c.lm.n_heads = 2;
  c.lm.max_seq = 16;
  return c;
}

// A master checkpoint as the trainer writes it, with random weights; `poison` gets a NaN.
void write_master(const model::ModelConfig& c, const std::string& path, const std::string& poison = "", const std::string& skip = "") {
  ckpt::SafetensorsWriter w;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0, 0.05f);
  for (const auto& p : c.params()) {
    if (p.name == skip) continue;
    std::int64_t n = 1;
    for (auto s : p.shape) n *= s;
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = nd(rng);
    if (p.name == poison) v[3] = std::nanf("");
    w.add_f32(p.name, p.shape, v);
  }
  w.set_metadata(ckpt::kModelConfigKey, c.to_json());
  w.write(path);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ModelConfig, DefaultLmSizeAndQuantizedWeights) {
  const model::ModelConfig c;
  EXPECT_EQ(c.lm.hidden(), 704);
  std::int64_t quantized = 0;
  for (const auto& p : c.params()) quantized += p.quantized ? p.shape[0] * p.shape[1] : 0;
  EXPECT_EQ(quantized, 4 * (4 * 256 * 256 + 3 * 256 * 704));
  EXPECT_EQ(c.param_count(), quantized + 2 * 256 * 256 + 9 * 256);  // + embedding, head, 9 norms
  EXPECT_EQ(model::ModelConfig::default_mlp().param_count(), 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10);
}

TEST(ModelCheckpoint, ExportWritesAnAnchorThatOpensAndDerives) {
  const std::string m = tmp("m.safetensors"), a = tmp("a.safetensors");
  write_master(small(), m);
  const auto master = model::Checkpoint::open(m);
  EXPECT_FALSE(master.is_anchor());
  const auto s = model::export_anchor(master, mx::find_format("mxfp8_e4m3"), a);
  EXPECT_EQ(s.mx_tensors, 7);
  const auto anchor = model::Checkpoint::open(a);
  ASSERT_TRUE(anchor.is_anchor());
  EXPECT_EQ(anchor.anchor_format()->name, "mxfp8_e4m3");
  EXPECT_EQ(anchor.config().to_json(), small().to_json());
  EXPECT_LT(s.bytes_out, s.bytes_in);
  const model::Param& wq = anchor.params()[3];
  ASSERT_EQ(wq.name, "blocks.0.wq.weight");
  // The anchor's own format is the stored tensor; a lower FP format is derivable, INT is not.
  const auto v = master.values(wq);
  EXPECT_EQ(anchor.values(wq), mx::dequantize(mx::quantize(mx::find_format("mxfp8_e4m3"), v.data(), 32, 32)));
  EXPECT_EQ(anchor.derive_refusal(mx::find_format("mxfp4")), "");
  EXPECT_NE(anchor.derive_refusal(mx::find_format("mxint4")), "");
  EXPECT_NE(error_of([&] { anchor.packed(wq, mx::find_format("mxint4")); }).find("cannot derive mxint4"), std::string::npos);
  EXPECT_NE(error_of([&] { model::export_anchor(anchor, mx::find_format("mxint8"), tmp("x.safetensors")); }).find("already an anchor"),
            std::string::npos);
  std::filesystem::remove(m);
  std::filesystem::remove(a);
}

TEST(ModelCheckpoint, BadMastersGiveOneLineErrorsAndWriteNothing) {
  const std::string m = tmp("bad.safetensors"), out = tmp("bad_out.safetensors");
  write_master(small(), m, "blocks.0.w2.weight");
  const auto master = model::Checkpoint::open(m);
  const std::string e = error_of([&] { model::export_anchor(master, mx::find_format("mxint8"), out); });
  EXPECT_NE(e.find("tensor 'blocks.0.w2.weight' has a non-finite value"), std::string::npos) << e;
  EXPECT_FALSE(std::filesystem::exists(out));

  write_master(small(), m, "", "blocks.0.wk.weight");
  const std::string e2 = error_of([&] { model::Checkpoint::open(m); });
  EXPECT_NE(e2.find("tensor 'blocks.0.wk.weight' is missing"), std::string::npos) << e2;

  ckpt::SafetensorsWriter w;
  w.add_f32("x", {2}, std::vector<float>{1, 2});
  w.write(m);
  EXPECT_NE(error_of([&] { model::Checkpoint::open(m); }).find("no model config"), std::string::npos);

  auto c = small();
  write_master(c, m);
  c.lm.dim = 64;  // the file's tensors no longer fit the config it claims
  ckpt::SafetensorsWriter w2;
  w2.add_non_mx(ckpt::SafetensorsFile::open(m));
  w2.set_metadata(ckpt::kModelConfigKey, c.to_json());
  w2.write(out);
  EXPECT_NE(error_of([&] { model::Checkpoint::open(out); }).find("tensor 'tok_emb.weight' is F32 [256,32], the config says F32 [256,64]"),
            std::string::npos);
  std::filesystem::remove(m);
  std::filesystem::remove(out);
}
