// ggml's tensor types (ggml.h enum ggml_type): ids, block sizes and byte sizes of the ones a GGUF
// reader meets in practice, and IEEE half conversions. See docs/export.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace mfqat::gguf {

enum class GgmlType : std::uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ4_NL = 20, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, BF16 = 30, MXFP4 = 39,
};

struct TypeInfo {
  GgmlType type;
  const char* name;        // as ggml spells it: "f32", "q8_0", "mxfp4"
  std::int64_t block;      // elements per block
  std::uint64_t bytes;     // bytes per block
};

// nullptr for an id this table does not know.
const TypeInfo* type_info(std::uint32_t id);
inline const TypeInfo& info(GgmlType t) { return *type_info(static_cast<std::uint32_t>(t)); }
// Case-insensitive lookup by ggml name ("q8_0", "MXFP4").
std::optional<GgmlType> parse_type(std::string_view name);

// IEEE binary16. to_half rounds to nearest even (overflow to Inf, NaN kept NaN).
float half_to_float(std::uint16_t h);
std::uint16_t float_to_half(float f);
// 2^e as a half when it is one exactly (normal or subnormal: -24 <= e <= 15).
std::optional<std::uint16_t> half_pow2(int e);
std::uint16_t float_to_bf16(float f);  // round to nearest even
float bf16_to_float(std::uint16_t b);

}  // namespace mfqat::gguf
