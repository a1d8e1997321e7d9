#include "mfqat/export/gguf_export.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "gguf_tokenizer.h"
#include "mfqat/export/ggml_blocks.h"
#include "mfqat/export/gguf.h"

namespace mfqat::exporter {

namespace {

using gguf::GgmlType;
using gguf::Value;

std::string gguf_arch(const model::LmConfig& c) {
  if (c.arch == "mfqat" || c.arch == "llama" || c.arch == "mistral") return "llama";
  if (c.arch == "qwen2" || c.arch == "qwen3") return c.arch;
  throw std::invalid_argument("architecture '" + c.arch + "' has no llama.cpp name");
}

// llama_ftype (llama.h) for general.file_type: what the bulk of the weights is.
std::uint32_t file_type(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return 0;
    case GgmlType::F16: return 1;
    case GgmlType::Q4_0: return 2;
    case GgmlType::Q8_0: return 7;
    case GgmlType::Q5_0: return 8;
    case GgmlType::BF16: return 32;
    case GgmlType::MXFP4: return 38;  // LLAMA_FTYPE_MOSTLY_MXFP4_MOE: llama.cpp's only MXFP4 file type
    default: return 0;
  }
}

// llama.cpp's `llama` architecture rotates adjacent pairs (x[2i], x[2i+1]); Hugging Face and mfqat
// rotate halves (x[i], x[i + d/2]). convert_hf_to_gguf.py reorders each head's rows of q and k so
// that both give the same result: new row 2i+h of a head = old row h*d/2 + i. Whole rows move, so
// an MX matrix (blocks along the rows) is permuted exactly.
std::vector<std::int64_t> rope_row_order(std::int64_t rows, std::int64_t head_dim, bool inverse) {
  std::vector<std::int64_t> src(static_cast<std::size_t>(rows));
  const std::int64_t half = head_dim / 2;
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t head = r / head_dim, k = r % head_dim;
    const std::int64_t from = head * head_dim + (k % 2) * half + k / 2;
    if (inverse) src[static_cast<std::size_t>(from)] = r;
    else src[static_cast<std::size_t>(r)] = from;
  }
  return src;
}

mx::PackedMatrix permute_rows(const mx::PackedMatrix& m, const std::vector<std::int64_t>& src) {
  mx::PackedMatrix o{m.format, m.rows, m.cols, std::vector<std::uint8_t>(m.elements.size()), std::vector<std::uint8_t>(m.scales.size())};
  const std::size_t rb = m.format.packed_row_bytes(m.cols), sb = static_cast<std::size_t>(m.format.blocks_per_row(m.cols));
  for (std::int64_t r = 0; r < m.rows; ++r) {
    const auto s = static_cast<std::size_t>(src[static_cast<std::size_t>(r)]);
    std::memcpy(o.elements.data() + static_cast<std::size_t>(r) * rb, m.elements.data() + s * rb, rb);
    std::memcpy(o.scales.data() + static_cast<std::size_t>(r) * sb, m.scales.data() + s * sb, sb);
  }
  return o;
}

std::vector<float> permute_rows(const std::vector<float>& v, std::int64_t cols, const std::vector<std::int64_t>& src) {
  std::vector<float> o(v.size());
  for (std::size_t r = 0; r < src.size(); ++r)
    std::memcpy(o.data() + r * static_cast<std::size_t>(cols), v.data() + static_cast<std::size_t>(src[r]) * static_cast<std::size_t>(cols),
                static_cast<std::size_t>(cols) * sizeof(float));
  return o;
}

bool is_rope_permuted(const std::string& arch, const std::string& param) {
  if (arch != "llama") return false;
  const auto ends = [&](const char* s) {
    const std::size_t n = std::strlen(s);
    return param.size() >= n && param.compare(param.size() - n, n, s) == 0;
  };
  return ends(".wq.weight") || ends(".wk.weight") || ends(".wq.bias") || ends(".wk.bias");
}

}  // namespace

std::string gguf_tensor_name(const std::string& n) {
  if (n == "tok_emb.weight") return "token_embd.weight";
  if (n == "norm.weight") return "output_norm.weight";
  if (n == "head.weight") return "output.weight";
  static const std::pair<const char*, const char*> kParts[] = {
      {"attn_norm.weight", "attn_norm.weight"}, {"mlp_norm.weight", "ffn_norm.weight"}, {"wq.weight", "attn_q.weight"},
      {"wk.weight", "attn_k.weight"},           {"wv.weight", "attn_v.weight"},         {"wo.weight", "attn_output.weight"},
      {"w1.weight", "ffn_gate.weight"},         {"w2.weight", "ffn_down.weight"},       {"w3.weight", "ffn_up.weight"},
      {"wq.bias", "attn_q.bias"},               {"wk.bias", "attn_k.bias"},             {"wv.bias", "attn_v.bias"},
      {"q_norm.weight", "attn_q_norm.weight"},  {"k_norm.weight", "attn_k_norm.weight"},
  };
  if (n.rfind("blocks.", 0) == 0) {
    const std::size_t dot = n.find('.', 7);
    const std::string layer = n.substr(7, dot - 7), rest = n.substr(dot + 1);
    for (const auto& [from, to] : kParts)
      if (rest == from) return "blk." + layer + "." + to;
  }
  throw std::invalid_argument("parameter '" + n + "' has no GGUF name");
}

GgufReport export_gguf(const model::Checkpoint& ck, const GgufOptions& o, const std::string& out) {
  const model::ModelConfig& mc = ck.config();
  if (mc.kind != model::Kind::Lm) throw std::invalid_argument(ck.path() + ": only language models export to GGUF (this is an MLP)");
  const model::LmConfig& c = mc.lm;
  GgufReport rep;
  rep.arch = gguf_arch(c);
  const std::string& a = rep.arch;
  if (o.dense != GgmlType::F32 && o.dense != GgmlType::F16 && o.dense != GgmlType::BF16)
    throw std::invalid_argument(std::string("dense tensors are written as f32, bf16 or f16, not ") + gguf::info(o.dense).name);

  // The quantized linears' ggml type.
  if (o.format) {
    if (const std::string why = ck.derive_refusal(*o.format); !why.empty()) throw std::invalid_argument(why);
    if (o.type) {
      rep.type = *o.type;
    } else if (auto t = gguf::default_type(*o.format)) {
      rep.type = *t;
    } else if (o.allow_f16) {
      rep.type = GgmlType::F16;
    } else {
      throw std::invalid_argument(o.format->name + " has no exact ggml block type (ggml has E2M1 MXFP4 and integer Q8_0/Q5_0/Q4_0 blocks); --allow-f16 writes it as F16 where every value is exact");
    }
    if (const std::string why = gguf::type_refusal(*o.format, rep.type); !why.empty()) throw std::invalid_argument(why);
  } else {
    if (ck.is_anchor()) throw std::invalid_argument(ck.path() + ": an anchor has no fp32 weights; name a --format");
    rep.type = o.type.value_or(GgmlType::F32);
    if (rep.type != GgmlType::F32 && rep.type != GgmlType::F16 && rep.type != GgmlType::BF16)
      throw std::invalid_argument("fp32 weights are written as f32, bf16 or f16");
  }

  gguf::Writer w(out);
  w.set("general.architecture", Value::str(a));
  std::string name = o.name;
  if (name.empty()) name = std::filesystem::path(ck.path()).filename().replace_extension().string();
  w.set("general.name", Value::str(name));
  w.set("general.file_type", Value::u32(file_type(rep.type)));
  w.set("general.quantization_version", Value::u32(2));
  const auto u32 = [](std::int64_t v) { return Value::u32(static_cast<std::uint32_t>(v)); };
  w.set(a + ".vocab_size", u32(c.vocab));
  w.set(a + ".context_length", u32(c.max_seq));
  w.set(a + ".embedding_length", u32(c.dim));
  w.set(a + ".block_count", u32(c.n_layers));
  w.set(a + ".feed_forward_length", u32(c.hidden()));
  w.set(a + ".attention.head_count", u32(c.n_heads));
  w.set(a + ".attention.head_count_kv", u32(c.kv_heads()));
  w.set(a + ".attention.key_length", u32(c.head_dim()));
  w.set(a + ".attention.value_length", u32(c.head_dim()));
  w.set(a + ".rope.dimension_count", u32(c.head_dim()));
  w.set(a + ".rope.freq_base", Value::f32(static_cast<float>(c.rope_theta)));
  w.set(a + ".attention.layer_norm_rms_epsilon", Value::f32(static_cast<float>(c.norm_eps)));
  w.set("mfqat.model_config", Value::str(mc.to_json()));
  if (o.format) w.set("mfqat.format", Value::str(o.format->name));
  if (ck.anchor_format()) w.set("mfqat.anchor", Value::str(ck.anchor_format()->name));
  for (auto& [k, v] : detail::tokenizer_metadata(ck, c.vocab)) w.set(k, std::move(v));

  // Llama 3 rope scaling: llama.cpp divides each rotary frequency by rope_freqs[i].
  std::vector<float> rope_factors;
  if (c.rope_scaling.factor > 0) {
    model::LmConfig plain = c;
    plain.rope_scaling = {};
    const std::vector<double> scaled = model::rope_inv_freq(c), base = model::rope_inv_freq(plain);
    for (std::size_t i = 0; i < scaled.size(); ++i) rope_factors.push_back(static_cast<float>(base[i] / scaled[i]));
    w.declare("rope_freqs.weight", GgmlType::F32, {static_cast<std::int64_t>(rope_factors.size())});
  }
  const std::vector<model::Param>& params = ck.params();
  for (const model::Param& p : params) {
    if (p.name == model::kTokenizerTensor) continue;
    std::vector<std::int64_t> ne(p.shape.rbegin(), p.shape.rend());
    const bool q = p.quantized;
    w.declare(gguf_tensor_name(p.name), q ? rep.type : o.dense, ne);
  }
  if (!rope_factors.empty()) {
    std::vector<std::uint8_t> b(rope_factors.size() * 4);
    std::memcpy(b.data(), rope_factors.data(), b.size());
    w.write("rope_freqs.weight", b);
  }
  for (const model::Param& p : params) {
    const std::string gname = gguf_tensor_name(p.name);
    const bool perm = is_rope_permuted(a, p.name);
    const std::int64_t rows = p.shape[0], cols = p.shape.size() > 1 ? p.shape[1] : 1;
    try {
      if (p.quantized && o.format) {
        mx::PackedMatrix m = ck.packed(p, *o.format);
        if (perm) m = permute_rows(m, rope_row_order(rows, c.head_dim(), false));
        w.write(gname, gguf::from_mx(mx::view(m), rep.type));
        ++rep.quantized;
      } else {
        std::vector<float> v = ck.values(p);
        if (perm) v = permute_rows(v, cols, rope_row_order(rows, c.head_dim(), false));
        w.write(gname, gguf::dense_bytes(v, p.quantized ? rep.type : o.dense, gname));
        ++(p.quantized ? rep.quantized : rep.dense);
      }
    } catch (const gguf::InexactError& e) {
      throw std::runtime_error(gname + " (" + p.name + "): " + e.what());
    }
  }
  w.commit();
  rep.bytes = w.bytes_written();
  if (o.verify && o.format) {
    try {
      const gguf::File f = gguf::File::open(out);
      for (const model::Param& p : params) {
        if (!p.quantized) continue;
        const std::string gname = gguf_tensor_name(p.name);
        const gguf::TensorInfo* t = f.find(gname);
        if (!t) throw std::runtime_error(gname + " is missing");
        mx::PackedMatrix back = gguf::to_mx(t->type, f.data(*t), p.shape[0], p.shape[1], *o.format);
        if (is_rope_permuted(a, p.name)) back = permute_rows(back, rope_row_order(p.shape[0], c.head_dim(), true));
        if (!gguf::same_bits(back, ck.packed(p, *o.format), true))
          throw std::runtime_error(gname + ": read back, its MX bits differ from the " + o.format->name + " derived from the checkpoint");
        ++rep.verified;
      }
    } catch (const std::exception& e) {
      std::error_code ec;
      std::filesystem::remove(out, ec);
      throw std::runtime_error(out + ": verification failed, file removed: " + e.what());
    }
  }
  return rep;
}

}  // namespace mfqat::exporter
