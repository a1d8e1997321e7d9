// Model checkpoints without libtorch: config parameters, opening masters and anchors, export.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <random>

#include "common.h"
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

namespace {

// Rewrites the anchor `in` to `out`, tensor by tensor: `requant` maps an MX tensor's name to the
// format it is re-quantized to (from its own dequantized values; others are kept as they are),
// `extra` adds MX tensors, and `meta` sets (value) or removes (nullopt) metadata keys.
void rewrite_anchor(const std::string& in, const std::string& out, const std::map<std::string, mx::Format>& requant,
                    const std::map<std::string, std::optional<std::string>>& meta = {},
                    const std::map<std::string, mx::PackedMatrix>& extra = {}) {
  const auto f = ckpt::SafetensorsFile::open(in);
  ckpt::SafetensorsWriter w;
  for (const auto& [k, v] : f.metadata()) {
    if (k.rfind(ckpt::kMxMetaPrefix, 0) != 0 && !meta.count(k)) w.set_metadata(k, v);
  }
  for (const auto& [k, v] : meta) {
    if (v) w.set_metadata(k, *v);
  }
  for (const auto& t : f.tensors()) {
    if (!f.is_mx_part(t)) w.add(t.name, t.dtype, t.shape, f.data(t));
  }
  for (const auto& m : f.mx_tensors()) {
    const mx::PackedMatrix p = f.load_mx(m);
    const auto it = requant.find(m.name);
    if (it == requant.end()) {
      w.add_mx(m.name, p);
    } else {
      const std::vector<float> v = mx::dequantize(p);
      w.add_mx(m.name, mx::quantize(it->second, v.data(), p.rows, p.cols));
    }
  }
  for (const auto& [name, p] : extra) w.add_mx(name, p);
  w.write(out);
}

// The error of Checkpoint::open(path): one line, naming the file and (when given) the tensor.
std::string open_error(const std::string& path, const std::string& tensor) {
  const std::string e = error_of([&] { model::Checkpoint::open(path); });
  EXPECT_FALSE(e.empty()) << "no error for " << path;
  EXPECT_EQ(e.rfind(path + ": ", 0), 0u) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  if (!tensor.empty()) {
    EXPECT_NE(e.find("tensor '" + tensor + "'"), std::string::npos) << e;
  }
  return e;
}

}  // namespace

TEST(ModelCheckpoint, ExportRecordsTheBlockSizeAndOlderAnchorsStillOpen) {
  const std::string m = tmp("bs_m.safetensors"), a = tmp("bs_a.safetensors"), old = tmp("bs_old.safetensors");
  write_master(small(), m);
  model::export_anchor(model::Checkpoint::open(m), mx::find_format("mxint8", 16), a);
  const auto anchor = model::Checkpoint::open(a);
  EXPECT_EQ(anchor.file().metadata().at(ckpt::kAnchorBlockSizeKey), "16");
  ASSERT_TRUE(anchor.is_anchor());
  EXPECT_EQ(anchor.anchor_format()->name, "mxint8");
  EXPECT_EQ(anchor.anchor_format()->block_size, 16);
  // An anchor written before the key existed takes the (common) block size of its tensors.
  rewrite_anchor(a, old, {}, {{ckpt::kAnchorBlockSizeKey, std::nullopt}});
  const auto o = model::Checkpoint::open(old);
  EXPECT_EQ(o.file().metadata().count(ckpt::kAnchorBlockSizeKey), 0u);
  EXPECT_EQ(o.anchor_format()->block_size, 16);
  for (const auto& f : {m, a, old}) std::filesystem::remove(f);
}

TEST(ModelCheckpoint, AnchorWhoseTensorsDisagreeIsRefusedNamingTheTensor) {
  const std::string m = tmp("dis_m.safetensors"), a = tmp("dis_a.safetensors"), bad = tmp("dis_bad.safetensors");
  write_master(small(), m);
  model::export_anchor(model::Checkpoint::open(m), mx::find_format("mxfp8_e4m3"), a);
  ASSERT_NO_THROW(model::Checkpoint::open(a));
  const mx::Format e4m3_16 = mx::find_format("mxfp8_e4m3", 16);

  // One weight with another block size: refused against the metadata's block size...
  rewrite_anchor(a, bad, {{"blocks.0.w2.weight", e4m3_16}});
  std::string e = open_error(bad, "blocks.0.w2.weight");
  EXPECT_NE(e.find("block size 16"), std::string::npos) << e;
  EXPECT_NE(e.find(std::string(ckpt::kAnchorBlockSizeKey) + " = 32"), std::string::npos) << e;
  // ... and, in a file without it, against the first quantized weight's.
  rewrite_anchor(a, bad, {{"blocks.0.w2.weight", e4m3_16}}, {{ckpt::kAnchorBlockSizeKey, std::nullopt}});
  e = open_error(bad, "blocks.0.w2.weight");
  EXPECT_NE(e.find("the anchor's block size is 32 (tensor 'blocks.0.wq.weight')"), std::string::npos) << e;
  // All weights in block size 16 while the metadata says 32: the first weight is named.
  std::map<std::string, mx::Format> all16;
  for (const auto& p : small().params()) {
    if (p.quantized) all16.emplace(p.name, e4m3_16);
  }
  rewrite_anchor(a, bad, all16);
  e = open_error(bad, "blocks.0.wq.weight");
  EXPECT_NE(e.find("block size 16"), std::string::npos) << e;
  // One weight in another format.
  rewrite_anchor(a, bad, {{"blocks.0.w1.weight", mx::find_format("mxfp4")}});
  e = open_error(bad, "blocks.0.w1.weight");
  EXPECT_NE(e.find("is mxfp4_e2m1 (block size 32), not the anchor format mxfp8_e4m3"), std::string::npos) << e;
  // An MX tensor the config does not know, in another block size.
  std::vector<float> x(2 * 64, 0.5f);
  rewrite_anchor(a, bad, {}, {}, {{"extra.weight", mx::quantize(e4m3_16, x.data(), 2, 64)}});
  e = open_error(bad, "extra.weight");
  EXPECT_NE(e.find("block size 16"), std::string::npos) << e;
  for (const auto& f : {m, a, bad}) std::filesystem::remove(f);
}

TEST(ModelCheckpoint, AnchorWhoseMetadataDisagreesWithItsTensorsIsRefused) {
  const std::string m = tmp("md_m.safetensors"), a = tmp("md_a.safetensors"), bad = tmp("md_bad.safetensors");
  write_master(small(), m);
  model::export_anchor(model::Checkpoint::open(m), mx::find_format("mxfp8_e4m3"), a);
  // mfqat.anchor names another format than the tensors': the first weight is named.
  rewrite_anchor(a, bad, {}, {{ckpt::kAnchorKey, "mxint8"}});
  std::string e = open_error(bad, "blocks.0.wq.weight");
  EXPECT_NE(e.find("not the anchor format mxint8"), std::string::npos) << e;
  // mfqat.anchor_block_size disagrees with every tensor.
  rewrite_anchor(a, bad, {}, {{ckpt::kAnchorBlockSizeKey, "64"}});
  e = open_error(bad, "blocks.0.wq.weight");
  EXPECT_NE(e.find("the anchor's block size is 64"), std::string::npos) << e;
  // mfqat.anchor_block_size that is not a block size (no tensor to name: the metadata is wrong).
  for (const char* v : {"", "abc", "0", "32 ", "-32", "4096", "99999999999"}) {
    rewrite_anchor(a, bad, {}, {{ckpt::kAnchorBlockSizeKey, v}});
    e = open_error(bad, "");
    EXPECT_NE(e.find("is not a block size"), std::string::npos) << v << ": " << e;
  }
  // A quantized weight stored as F32 in an anchor.
  const auto mf = ckpt::SafetensorsFile::open(m);
  ckpt::SafetensorsWriter w;
  const auto af = ckpt::SafetensorsFile::open(a);
  for (const auto& [k, v] : af.metadata()) {
    if (k != std::string(ckpt::kMxMetaPrefix) + "blocks.0.wv.weight") w.set_metadata(k, v);
  }
  for (const auto& t : af.tensors()) {
    if (t.name.rfind("blocks.0.wv.weight", 0) != 0) w.add(t.name, t.dtype, t.shape, af.data(t));
  }
  const auto* wv = mf.find("blocks.0.wv.weight");
  w.add("blocks.0.wv.weight", wv->dtype, wv->shape, mf.data(*wv));
  w.write(bad);
  e = open_error(bad, "blocks.0.wv.weight");
  EXPECT_NE(e.find("is F32, but an anchor (mfqat.anchor = mxfp8_e4m3) stores it as an MX tensor"), std::string::npos) << e;
  // The anchor's tensors without mfqat.anchor: a master has no MX tensors.
  rewrite_anchor(a, bad, {}, {{ckpt::kAnchorKey, std::nullopt}, {ckpt::kAnchorBlockSizeKey, std::nullopt}});
  e = open_error(bad, "blocks.0.wq.weight");
  EXPECT_NE(e.find("is an MX tensor (mxfp8_e4m3 (block size 32)), but the metadata has no mfqat.anchor"), std::string::npos) << e;
  // A block size in the metadata of a master.
  ckpt::SafetensorsWriter w2;
  w2.add_non_mx(mf);
  w2.set_metadata(ckpt::kAnchorBlockSizeKey, "32");
  w2.write(bad);
  e = open_error(bad, "");
  EXPECT_NE(e.find("no mfqat.anchor"), std::string::npos) << e;
  // An MX tensor in a master, beside the F32 weights.
  std::vector<float> x(2 * 64, 0.5f);
  ckpt::SafetensorsWriter w3;
  w3.add_non_mx(mf);
  w3.add_mx("extra.weight", mx::quantize(mx::find_format("mxint8"), x.data(), 2, 64));
  w3.write(bad);
  open_error(bad, "extra.weight");
  for (const auto& f : {m, a, bad}) std::filesystem::remove(f);
}
