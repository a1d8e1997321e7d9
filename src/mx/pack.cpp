#include <cstring>

#include "kernels.h"

namespace mfqat::mx {
namespace detail {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "packing assumes a little-endian host");

// 8 codes (one per byte of x, each < 2^B) -> 8*B bits, by three compaction steps: byte pairs into
// 16-bit lanes, 16-bit pairs into 32-bit lanes, then the two 32-bit halves.
template <int B>
inline std::uint64_t compact8(std::uint64_t x) {
  x = (x & 0x00ff00ff00ff00ffull) | ((x & 0xff00ff00ff00ff00ull) >> (8 - B));
  x = (x & 0x0000ffff0000ffffull) | ((x & 0xffff0000ffff0000ull) >> (16 - 2 * B));
  return (x & 0xffffffffull) | ((x >> 32) << (4 * B));
}
// The inverse: 8*B bits -> 8 codes, one per byte.
template <int B>
inline std::uint64_t expand8(std::uint64_t v) {
  constexpr std::uint64_t m4 = (1ull << (4 * B)) - 1, m2 = (1ull << (2 * B)) - 1, m1 = (1ull << B) - 1;
  v = (v & m4) | ((v >> (4 * B)) & m4) << 32;
  v = (v & (m2 | m2 << 32)) | ((v >> (2 * B)) & (m2 | m2 << 32)) << 16;
  const std::uint64_t l1 = m1 | m1 << 16 | m1 << 32 | m1 << 48;
  return (v & l1) | ((v >> B) & l1) << 8;
}

template <int B>
std::int64_t pack_groups(const std::uint8_t* codes, std::int64_t n, std::uint8_t* o) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8, o += B) {
    std::uint64_t x;
    std::memcpy(&x, codes + i, 8);
    const std::uint64_t v = compact8<B>(x);
    std::memcpy(o, &v, B);
  }
  return i;
}

template <int B>
std::int64_t unpack_groups(const std::uint8_t* p, std::int64_t n, std::uint8_t* codes) {
  std::int64_t i = 0;
  if constexpr (B != 4 && B != 2) {
    // Whole 8-byte loads (masked) while 8 bytes remain: a B-byte partial load into a zeroed
    // word costs a store-forwarding stall per group.
    constexpr std::uint64_t mask = (1ull << (8 * B)) - 1;
    const std::int64_t safe = (n * B / 8 - 8) / B * 8;  // groups whose 8-byte load stays in bounds
    for (; i + 8 <= n && i < safe; i += 8, p += B) {
      std::uint64_t v;
      std::memcpy(&v, p, 8);
      const std::uint64_t x = expand8<B>(v & mask);
      std::memcpy(codes + i, &x, 8);
    }
  }
  for (; i + 8 <= n; i += 8, p += B) {
    std::uint64_t v = 0;
    if (B != 4 && B != 2 && i * B / 8 >= 8 - B) {
      std::memcpy(&v, p + B - 8, 8);  // 8 bytes ending at this group's end, high part is ours
      v >>= 8 * (8 - B);
    } else {
      std::memcpy(&v, p, B);
    }
    const std::uint64_t x = expand8<B>(v);
    std::memcpy(codes + i, &x, 8);
  }
  return i;
}

std::int64_t pack_groups_any(const std::uint8_t* codes, std::int64_t n, int bits, std::uint8_t* o) {
  switch (bits) {
    case 2: return pack_groups<2>(codes, n, o);
    case 3: return pack_groups<3>(codes, n, o);
    case 4: return pack_groups<4>(codes, n, o);
    case 5: return pack_groups<5>(codes, n, o);
    case 6: return pack_groups<6>(codes, n, o);
    case 7: return pack_groups<7>(codes, n, o);
    default: return 0;
  }
}

std::int64_t unpack_groups_any(const std::uint8_t* p, std::int64_t n, int bits, std::uint8_t* codes) {
  switch (bits) {
    case 2: return unpack_groups<2>(p, n, codes);
    case 3: return unpack_groups<3>(p, n, codes);
    case 4: return unpack_groups<4>(p, n, codes);
    case 5: return unpack_groups<5>(p, n, codes);
    case 6: return unpack_groups<6>(p, n, codes);
    case 7: return unpack_groups<7>(p, n, codes);
    default: return 0;
  }
}

}  // namespace

void pack_codes_at(const std::uint8_t* codes, std::int64_t n, int bits, std::uint8_t* out, std::int64_t bitpos) {
  std::int64_t i = 0;
  if ((bitpos & 7) == 0) {
    std::uint8_t* o = out + (bitpos >> 3);
    if (bits == 8) {
      std::memcpy(o, codes, static_cast<std::size_t>(n));
      return;
    }
    i = pack_groups_any(codes, n, bits, o);  // 8 codes fill exactly `bits` bytes
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
    i = unpack_groups_any(p, n, bits, codes);
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
