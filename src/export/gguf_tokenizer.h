// The tokenizer of a checkpoint as llama.cpp's `tokenizer.ggml.*` metadata.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mfqat/export/gguf.h"
#include "mfqat/model/checkpoint.h"

namespace mfqat::exporter::detail {

// key, value pairs in the order they are written. mfqat's byte-level LM (no tokenizer.json):
// 256 byte tokens under GPT-2's byte alphabet, no merges, so llama.cpp's BPE gives id == byte.
// A tokenizer.json: byte-level BPE (Llama 3: pre "llama-bpe"; Qwen 2/3: "qwen2") or SentencePiece
// BPE with byte fallback (Llama 2, Mistral: model "llama"). Others are refused naming the part.
std::vector<std::pair<std::string, gguf::Value>> tokenizer_metadata(const model::Checkpoint& ck, std::int64_t vocab);

}  // namespace mfqat::exporter::detail
