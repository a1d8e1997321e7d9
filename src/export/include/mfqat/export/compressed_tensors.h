// A model checkpoint written as a Hugging Face directory in the compressed-tensors format
// (vLLM, llm-compressor): config.json with `quantization_config` (format
// "mxfp4-pack-quantized", group 32, uint8 E8M0 scales), model.safetensors with every quantized
// linear as `weight_packed` (U8 [out, in/2], element 2i in the low nibble: mfqat's own MXFP4 bytes)
// and `weight_scale` (U8 [out, in/32], the E8M0 bytes), the rest in BF16 where every value is
// exact (else F32), and the tokenizer files. See docs/export.md.
#pragma once

#include <cstdint>
#include <string>

#include "mfqat/model/checkpoint.h"

namespace mfqat::exporter {

struct CtReport {
  std::int64_t quantized = 0, dense = 0;
  std::uint64_t bytes = 0;
  std::string dense_dtype;  // "BF16" or "F32"
};

// `format` must be E2M1 (MXFP4) with blocks of 32: the only MX format compressed-tensors names.
// The directory is written whole or not at all (built beside `out_dir`, renamed at the end);
// an existing `out_dir` is refused.
CtReport export_compressed_tensors(const model::Checkpoint& ck, const mx::Format& format, const std::string& out_dir);

}  // namespace mfqat::exporter
