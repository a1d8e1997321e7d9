#include "mfqat/export/ggml_types.h"

#include <array>
#include <bit>
#include <cctype>
#include <cmath>
#include <string>

namespace mfqat::gguf {

namespace {
// Block sizes and bytes from ggml's type_traits (ggml.c) / ggml-common.h.
constexpr std::array<TypeInfo, 22> kTypes{{
    {GgmlType::F32, "f32", 1, 4},       {GgmlType::F16, "f16", 1, 2},       {GgmlType::Q4_0, "q4_0", 32, 18},
    {GgmlType::Q4_1, "q4_1", 32, 20},   {GgmlType::Q5_0, "q5_0", 32, 22},   {GgmlType::Q5_1, "q5_1", 32, 24},
    {GgmlType::Q8_0, "q8_0", 32, 34},   {GgmlType::Q8_1, "q8_1", 32, 36},   {GgmlType::Q2_K, "q2_K", 256, 84},
    {GgmlType::Q3_K, "q3_K", 256, 110}, {GgmlType::Q4_K, "q4_K", 256, 144}, {GgmlType::Q5_K, "q5_K", 256, 176},
    {GgmlType::Q6_K, "q6_K", 256, 210}, {GgmlType::Q8_K, "q8_K", 256, 292}, {GgmlType::IQ4_NL, "iq4_nl", 32, 18},
    {GgmlType::I8, "i8", 1, 1},         {GgmlType::I16, "i16", 1, 2},       {GgmlType::I32, "i32", 1, 4},
    {GgmlType::I64, "i64", 1, 8},       {GgmlType::F64, "f64", 1, 8},       {GgmlType::BF16, "bf16", 1, 2},
    {GgmlType::MXFP4, "mxfp4", 32, 17},
}};
}  // namespace

const TypeInfo* type_info(std::uint32_t id) {
  for (const TypeInfo& t : kTypes)
    if (static_cast<std::uint32_t>(t.type) == id) return &t;
  return nullptr;
}

std::optional<GgmlType> parse_type(std::string_view name) {
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const TypeInfo& t : kTypes) {
    std::string n = t.name;
    for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (n == lower) return t.type;
  }
  return std::nullopt;
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    const float v = std::ldexp(static_cast<float>(m), -24);
    return sign ? -v : v;
  }
  if (e == 31) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13));
  return std::bit_cast<float>(sign | ((e - 15 + 127) << 23) | (m << 13));
}

std::uint16_t float_to_half(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
  if (a >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to Inf
  if (a < 0x38800000u) {  // below 2^-14: a subnormal half (or zero), round(|f| * 2^24) to nearest even
    const float v = std::bit_cast<float>(a) * 16777216.0f;  // exact: a power-of-two scaling of a float
    return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(std::nearbyint(v)));
  }
  const std::uint32_t mant = a & 0x7fffffu;
  std::uint32_t h = ((((a >> 23) - 127 + 15)) << 10) | (mant >> 13);
  const std::uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry moves into the exponent, as it should
  return static_cast<std::uint16_t>(sign | h);
}

std::optional<std::uint16_t> half_pow2(int e) {
  if (e < -24 || e > 15) return std::nullopt;
  if (e >= -14) return static_cast<std::uint16_t>((e + 15) << 10);
  return static_cast<std::uint16_t>(1u << (e + 24));
}

std::uint16_t float_to_bf16(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

float bf16_to_float(std::uint16_t b) { return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16); }

}  // namespace mfqat::gguf
