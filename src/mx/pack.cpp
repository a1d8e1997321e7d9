#include <cstring>

#include "kernels.h"

namespace mfqat::mx {
namespace detail {

void pack_codes_at(const std::uint8_t* codes, std::int64_t n, int bits, std::uint8_t* out, std::int64_t bitpos) {
  std::int64_t i = 0;
  if ((bitpos & 7) == 0) {
    std::uint8_t* o = out + (bitpos >> 3);
    if (bits == 8) {
      std::memcpy(o, codes, static_cast<std::size_t>(n));
      return;
    }
    for (; i + 8 <= n; i += 8) {  // 8 codes fill exactly `bits` bytes
      std::uint64_t acc = 0;
      for (int j = 0; j < 8; ++j) acc |= static_cast<std::uint64_t>(codes[i + j]) << (j * bits);
      for (int j = 0; j < bits; ++j) o[j] = static_cast<std::uint8_t>(acc >> (8 * j));
      o += bits;
    }
    bitpos += i * bits;
  }
  for (; i < n; ++i, bitpos += bits) {
    const std::uint32_t v = codes[i];
    const std::int64_t b = bitpos >> 3;
    const int off = static_cast<int>(bitpos & 7);
    if (off == 0) {
      out[b] = static_cast<std::uint8_t>(v);
    } else {
      out[b] = static_cast<std::uint8_t>(out[b] | (v << off));
      if (off + bits > 8) out[b + 1] = static_cast<std::uint8_t>(v >> (8 - off));
    }
  }
}

void unpack_codes_at(const std::uint8_t* in, std::int64_t bitpos, std::int64_t n, int bits, std::uint8_t* codes) {
  const std::uint32_t mask = (1u << bits) - 1;
  std::int64_t i = 0;
  if ((bitpos & 7) == 0) {
    const std::uint8_t* p = in + (bitpos >> 3);
    if (bits == 8) {
      std::memcpy(codes, p, static_cast<std::size_t>(n));
      return;
    }
    for (; i + 8 <= n; i += 8) {
      std::uint64_t acc = 0;
      for (int j = 0; j < bits; ++j) acc |= static_cast<std::uint64_t>(p[j]) << (8 * j);
      for (int j = 0; j < 8; ++j) codes[i + j] = static_cast<std::uint8_t>((acc >> (j * bits)) & mask);
      p += bits;
    }
    bitpos += i * bits;
  }
  for (; i < n; ++i, bitpos += bits) {
    const std::int64_t b = bitpos >> 3;
    const int off = static_cast<int>(bitpos & 7);
    std::uint32_t w = in[b] >> off;
    if (off + bits > 8) w |= static_cast<std::uint32_t>(in[b + 1]) << (8 - off);
    codes[i] = static_cast<std::uint8_t>(w & mask);
  }
}

}  // namespace detail

void pack_codes(const std::uint8_t* codes, std::int64_t n, int bits, std::uint8_t* out) {
  detail::pack_codes_at(codes, n, bits, out, 0);
}
void unpack_codes(const std::uint8_t* in, std::int64_t n, int bits, std::uint8_t* codes) {
  detail::unpack_codes_at(in, 0, n, bits, codes);
}

}  // namespace mfqat::mx
