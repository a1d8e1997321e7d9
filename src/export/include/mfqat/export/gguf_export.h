// A model checkpoint (fp32 master, MX anchor, Hugging Face directory) written as a GGUF that
// llama.cpp runs: the quantized linears in format F (derived from the anchor by Slice-and-Scale)
// re-laid bit for bit as ggml blocks (ggml_blocks.h), the rest as F32 (or exact BF16/F16),
// llama.cpp's metadata for the `llama`, `qwen2` and `qwen3` architectures, and the tokenizer as
// `tokenizer.ggml.*`. See docs/export.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "mfqat/export/ggml_types.h"
#include "mfqat/model/checkpoint.h"

namespace mfqat::exporter {

struct GgufOptions {
  std::optional<mx::Format> format;     // the quantized linears' format; nullopt: fp32 values (F32)
  std::optional<gguf::GgmlType> type;   // their ggml type (default: gguf::default_type(format))
  bool allow_f16 = false;               // a format without a block type: F16 where every value is exact
  gguf::GgmlType dense = gguf::GgmlType::F32;  // embeddings, norms, the unquantized head: F32, BF16 or F16 (exact only)
  std::string name;                     // general.name (default: the checkpoint's file name)
  bool verify = true;                   // read the file back: every quantized tensor's MX bits identical
};

struct GgufReport {
  std::string arch;
  gguf::GgmlType type = gguf::GgmlType::F32;  // of the quantized linears
  std::int64_t quantized = 0, dense = 0;      // tensors
  std::uint64_t bytes = 0;
  std::int64_t verified = 0;                  // quantized tensors read back bit-identical
};

// Throws std::runtime_error / std::invalid_argument, one line naming the tensor and the reason
// (a block with no exact image, an architecture or tokenizer llama.cpp has no name for); nothing is
// left at `out` then.
GgufReport export_gguf(const model::Checkpoint& ck, const GgufOptions& o, const std::string& out);

// The GGUF tensor name of an mfqat LM parameter ("blocks.3.wq.weight" -> "blk.3.attn_q.weight").
std::string gguf_tensor_name(const std::string& mfqat_name);

// GPT-2's byte-to-unicode alphabet: the token text of byte b in a byte-level BPE vocabulary.
std::string byte_level_token(std::uint8_t b);

}  // namespace mfqat::exporter
