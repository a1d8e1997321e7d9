// Element codecs and E8M0 shared scales: the scalar definitions every other path must agree with.
#pragma once

#include <cstdint>

#include "mfqat/mx/format.h"

namespace mfqat::mx {

enum class Rounding : std::uint8_t { NearestEven, NearestAway, Stochastic };

const char* rounding_name(Rounding r);
Rounding parse_rounding(std::string_view s);  // "even" | "away" | "stochastic"; throws on others

inline constexpr std::uint8_t kE8M0Nan = 0xFF;

// Value of an E8M0 scale byte: 2^(s-127), NaN for 0xFF. s = 0 gives 2^-127 (an fp32 subnormal).
float e8m0_to_float(std::uint8_t s);

// Shared exponent of a block from the bit pattern of its amax (sign ignored):
// X = floor(log2(amax)) - emax, read from the exponent bits (exact, unlike log2f), clamped below
// at -127 (all-zero and tiny blocks). Returns the E8M0 byte X + 127, or kE8M0Nan when amax is
// Inf or NaN.
std::uint8_t shared_scale(std::uint32_t amax_bits, int emax);

// Decodes one element code (B low bits) to its value, without the block scale.
// FP: sign-magnitude with the format's specials (NaN/Inf codes decode to NaN/Inf).
// INT: two's complement / 2^(B-2); the code -2^(B-1) is never produced by the encoder and
// decodes to -2^(B-1)/2^(B-2) as in the OCP spec.
float decode_element(const Format& f, std::uint32_t code);

// Encodes a value already divided by the block scale. Saturates to +-max_normal (Inf too);
// NaN gives the format's NaN code where it has one, else 0. `rand24` (0..2^24-1) is the uniform
// draw used by stochastic rounding and ignored otherwise. `saturated` (optional) reports clipping.
std::uint32_t encode_element(const Format& f, float v, Rounding r, std::uint32_t rand24 = 0,
                             bool* saturated = nullptr);

}  // namespace mfqat::mx
