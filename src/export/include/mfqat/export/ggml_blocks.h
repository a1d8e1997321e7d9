// MX matrices re-laid as ggml blocks without changing a single value, and read back.
//
// An MX block is 32 element codes c_i and one E8M0 exponent E: value_i = elem(c_i) * 2^(E-127).
// Every MX element value is an integer times 2^-p (p = fraction_bits(format): MXINTk: k-2;
// E2M1: 1; E2M3: 3; E3M2: 4; E4M3: 9; E5M2: 16), so value_i = q_i * 2^(E-127-p) with integer
// q_i. ggml's Q8_0 / Q5_0 / Q4_0 store d (IEEE half) and integers q in [-128,127] / [-16,15] /
// [-8,7]: the block is exact there when some power of two d = 2^(E-127-p+s) is a half (normal or
// subnormal) and every q_i / 2^s is an integer in range. MXFP4 (E2M1) is ggml's MXFP4 block
// itself: the same codes and the same E. A block with no exact image is refused, naming it.
// See docs/export.md for the table of which format goes where.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "mfqat/export/ggml_types.h"
#include "mfqat/mx/packed_view.h"

namespace mfqat::gguf {

// A value that the target cannot hold exactly (one line, naming the row and block).
class InexactError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// p above: element values are integers times 2^-p.
int fraction_bits(const mx::Format& f);

// Whether f's elements are E2M1 (ggml's MXFP4 and compressed-tensors' mxfp4 hold those codes).
bool is_e2m1(const mx::Format& f);

// Dense values as ggml/safetensors bytes of t (F32, F16 or BF16, little-endian); a value that t
// does not hold exactly throws InexactError naming `name` and the element.
std::vector<std::uint8_t> dense_bytes(const std::vector<float>& v, GgmlType t, const std::string& name);

// The ggml type an MX format is written as by default: MXFP4 for E2M1, Q4_0 for MXINT2..4,
// Q5_0 for MXINT5, Q8_0 for MXINT6..8 and E2M3; nullopt where no ggml block type holds every
// block of the format (E3M2, E4M3, E5M2: F16 may, value by value, with --allow-f16).
std::optional<GgmlType> default_type(const mx::Format& f);

// Why no block of format f could be written as t (empty: blocks are checked one by one).
std::string type_refusal(const mx::Format& f, GgmlType t);

// The ggml bytes of an MX matrix in type t (MXFP4, Q8_0, Q5_0, Q4_0, F16, F32), rows of
// m.cols elements (cols a multiple of 32 for the block types). Throws InexactError at the first
// block (or value, for F16) without an exact image, std::invalid_argument for a type or shape the
// relayout does not take. Parallel over rows.
std::vector<std::uint8_t> from_mx(const mx::PackedView& m, GgmlType t);

// The fp32 values of n elements of a ggml tensor of type F32, F16, BF16, Q8_0, Q5_0, Q4_0 or
// MXFP4 (exact: every one of these values is a float). Throws std::invalid_argument for others.
void to_f32(GgmlType t, std::span<const std::uint8_t> data, std::int64_t n, float* out);

// An MX matrix of format f back from ggml bytes written by from_mx: MXFP4 unpacked directly
// (codes and scales as stored); the other types dequantized and re-quantized to f with the OCP
// rule (RNE), which gives back the original bits because every value is exact and each block's
// largest magnitude fixes its E. A negative-zero FP code read from a Q type comes back as +0 (the
// integer types have no -0), the one difference same_values_modulo_zero_sign() tolerates.
mx::PackedMatrix to_mx(GgmlType t, std::span<const std::uint8_t> data, std::int64_t rows, std::int64_t cols, const mx::Format& f);

// Bytes equal, or (FP formats) equal after mapping negative-zero codes to +0.
bool same_bits(const mx::PackedMatrix& a, const mx::PackedMatrix& b, bool zero_sign_may_differ);

}  // namespace mfqat::gguf
