// A borrowed packed MX matrix and what a reader of one needs (the runtime's kernels, the
// engine's checks): the value of every code, and the codes of a run of elements at any bit
// offset. Header only; the same results as the mx core's own unpacking and decode table.
#pragma once

#include <cstdint>

#include "mfqat/mx/codec.h"
#include "mfqat/mx/format.h"
#include "mfqat/mx/quantize.h"

namespace mfqat::mx {

// A packed MX matrix [rows, cols] (blocks along cols, the PackedMatrix layout), not owned: the
// bytes of a PackedMatrix, of a mapped checkpoint, of an arena.
struct PackedView {
  const Format* format = nullptr;
  const std::uint8_t* elements = nullptr;  // rows * format->packed_row_bytes(cols)
  const std::uint8_t* scales = nullptr;    // rows * format->blocks_per_row(cols)
  std::int64_t rows = 0, cols = 0;
};

inline PackedView view(const PackedMatrix& m) { return {&m.format, m.elements.data(), m.scales.data(), m.rows, m.cols}; }

// out[code] = decode_element(f, code) for every code of f (2^bits of them), without the block
// scale; the entries past 2^bits are left as they are. NaN/Inf codes decode to NaN/Inf.
inline void decode_table(const Format& f, float out[256]) {
  for (std::uint32_t c = 0; c < f.code_count(); ++c) out[c] = decode_element(f, c);
}

// The n codes (bits wide, one per byte into `codes`) of a packed bit stream starting at bit
// `bitpos` of `in`: element i of a row starts at bit i * bits (see PackedMatrix).
inline void unpack_codes_at(const std::uint8_t* in, std::int64_t bitpos, std::int64_t n, int bits, std::uint8_t* codes) {
  if ((bitpos & 7) == 0) {
    unpack_codes(in + (bitpos >> 3), n, bits, codes);
    return;
  }
  const std::uint32_t mask = (1u << bits) - 1;
  for (std::int64_t i = 0; i < n; ++i, bitpos += bits) {
    const std::int64_t b = bitpos >> 3;
    const int off = static_cast<int>(bitpos & 7);
    std::uint32_t w = static_cast<std::uint32_t>(in[b]) >> off;
    if (off + bits > 8) w |= static_cast<std::uint32_t>(in[b + 1]) << (8 - off);
    codes[i] = static_cast<std::uint8_t>(w & mask);
  }
}

}  // namespace mfqat::mx
