// Model checkpoints without libtorch: an fp32 master (every parameter F32, written by the
// trainer) or an MX anchor (every quantized weight as an MX tensor in one format, the rest F32;
// written by export_anchor). Both carry the model config in "mfqat.model_config"; an anchor also
// names its format in "mfqat.anchor". Layout: docs/checkpoint.md.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "mfqat/ckpt/safetensors.h"
#include "mfqat/convert/slice.h"
#include "mfqat/model/config.h"
#include "mfqat/model/hf.h"

namespace mfqat::model {

using ckpt::kAnchorKey;

// The tensor (U8, 1-D) in which `mfqat import` embeds the model's tokenizer.json.
inline constexpr const char* kTokenizerTensor = "tokenizer.json";
// The metadata key in which `mfqat import` (and every checkpoint written from one: anchors,
// masters) keeps what chat needs of tokenizer_config.json: a JSON object with its chat_template
// and special tokens (bos_token, eos_token, ...), nothing else.
inline constexpr const char* kTokenizerConfigKey = "mfqat.tokenizer_config";

// The members of a tokenizer_config.json text that kTokenizerConfigKey keeps (nullopt: none of
// them, or not a JSON object).
std::optional<std::string> chat_subset_of_tokenizer_config(const std::string& tokenizer_config_json);

class Checkpoint {
 public:
  // Maps the file and checks it against its config: every parameter present with its shape
  // (F32, or MX for the quantized weights of an anchor). An anchor's MX tensors must all be in
  // the format its metadata names (mfqat.anchor) with one block size (mfqat.anchor_block_size
  // when present); a master has no MX tensors. Errors are one line naming the file and, where
  // there is one, the tensor: std::runtime_error, or std::invalid_argument for a bad model config.
  //
  // `path` may also be a Hugging Face model directory (config.json + safetensors shards, BF16/F16/
  // F32): it opens as an fp32 master whose tensors are read and widened one at a time (hf.h).
  // ctx > 0 sets the LM's max_seq (the runtime's KV cache and rotary tables).
  static Checkpoint open(const std::string& path, std::int64_t ctx = 0);
  // The same checks on a file already read (tests, fuzzing: SafetensorsFile::from_bytes).
  static Checkpoint from_file(ckpt::SafetensorsFile file);

  const std::string& path() const { return hf_ ? hf_->dir() : file_.name(); }
  // The Hugging Face directory this master reads from (nullptr: an mfqat file).
  const HfWeights* hf() const { return hf_.get(); }
  // Bytes of the checkpoint on disk (every shard of a Hugging Face directory).
  std::uint64_t bytes() const { return hf_ ? hf_->bytes() : file_.file_size(); }
  // The model's tokenizer.json text: embedded by `mfqat import` (tensor kTokenizerTensor) or the
  // directory's own; nullopt for mfqat's byte-level LM.
  std::optional<std::string> tokenizer_json() const;
  // tokenizer_config.json's chat template and special tokens as JSON text: the directory's file,
  // or an mfqat file's kTokenizerConfigKey; nullopt when there is none.
  std::optional<std::string> tokenizer_config_json() const;
  const ModelConfig& config() const { return config_; }
  const std::vector<Param>& params() const { return params_; }
  const Param* find_param(const std::string& name) const;  // nullptr when the config has none
  bool is_anchor() const { return anchor_.has_value(); }
  const std::optional<mx::Format>& anchor_format() const { return anchor_; }
  const ckpt::SafetensorsFile& file() const { return file_; }

  // Why `target` cannot be derived from this checkpoint by Slice-and-Scale (empty: it can).
  // A master can be quantized to anything.
  std::string derive_refusal(const mx::Format& target) const;
  // A quantized weight in `target`: an anchor's is sliced from the stored bits (Slice-and-Scale;
  // the stored tensor itself when target is the anchor format); a master's is quantized (RNE).
  mx::PackedMatrix packed(const Param& p, const mx::Format& target, convert::SliceStats* stats = nullptr) const;
  // A parameter's fp32 values: an F32 tensor as stored (NaN/Inf rejected, naming the tensor);
  // an anchor's quantized weight dequantized from `target` (nullopt: the anchor format).
  std::vector<float> values(const Param& p, const std::optional<mx::Format>& target = std::nullopt) const;

 private:
  ckpt::SafetensorsFile file_;
  std::shared_ptr<const HfWeights> hf_;
  ModelConfig config_;
  std::vector<Param> params_;
  std::optional<mx::Format> anchor_;
};

// Expands a format list for a checkpoint: names, "int", "fp", "all", and "fp32" (nullopt; only
// where fp32 weights exist, i.e. `anchor` is nullopt or allow_fp32). Family words keep only the
// formats derivable from `anchor`; a named format that is not derivable is an error naming it.
std::vector<std::optional<mx::Format>> select_formats(const std::string& list, const std::optional<mx::Format>& anchor,
                                                      bool allow_fp32 = false);

// Reads the config from any mfqat model checkpoint (throws naming the file when it has none).
ModelConfig read_config(const ckpt::SafetensorsFile& f);

// Writes an anchor: the master's quantized weights in `anchor` (RNE), everything else F32 as it
// is, the config and the master's other metadata. Refuses a master with NaN/Inf (naming the
// tensor) or an input that is already an anchor; the output is written atomically.
struct ExportStats {
  std::int64_t mx_tensors = 0, f32_tensors = 0;
  std::uint64_t bytes_in = 0, bytes_out = 0;
};
// Streams: one tensor in memory at a time (an 8B-parameter master exports in a few GB).
ExportStats export_anchor(const Checkpoint& master, const mx::Format& anchor, const std::string& out);

// Writes an mfqat fp32 master of `src` (a Hugging Face directory, typically): every parameter
// F32 under mfqat's names, the config and the tokenizer embedded, streamed tensor by tensor.
ExportStats write_master(const Checkpoint& src, const std::string& out);

}  // namespace mfqat::model
