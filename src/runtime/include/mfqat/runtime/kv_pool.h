// The KV cache in pages: a session holds the pages its positions have reached, taken from its
// engine's pool and given back when it ends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "mfqat/runtime/memory.h"

namespace mfqat::runtime {

// Positions per page. Attention walks the keys in tiles of this many at multiples of it
// (session.cpp), so a tile never straddles two pages and its keys stay contiguous.
inline constexpr std::int64_t kKvPageTokens = 64;

// Pages of one engine's KV caches, all of one size: kKvPageTokens positions of every layer's keys
// and values ([layer, kv head, position in page, head_dim], keys then values). A page left by a
// finished session stays idle (resident: the next session does not fault it in again) while the
// idle pages fit the idle limit; beyond it, it is freed. Thread-safe.
class KvPool {
 public:
  KvPool(std::size_t page_floats, std::uint64_t idle_limit_bytes);
  ~KvPool();
  KvPool(const KvPool&) = delete;
  KvPool& operator=(const KvPool&) = delete;
  // An idle page or a new one (contents unspecified: a position is written before it is read).
  std::unique_ptr<HugeBuffer> take();
  void give(std::unique_ptr<HugeBuffer> page) noexcept;
  void set_idle_limit(std::uint64_t bytes);  // frees idle pages beyond it now
  std::uint64_t idle_bytes() const;
  std::uint64_t held_bytes() const;  // pages sessions hold now
  std::uint64_t page_bytes() const { return page_bytes_; }
  std::size_t page_floats() const { return page_floats_; }

 private:
  const std::size_t page_floats_;
  const std::uint64_t page_bytes_;  // as allocated (HugeBuffer rounds up)
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<HugeBuffer>> idle_;  // under mu_
  std::uint64_t idle_limit_ = 0;                   // under mu_
  std::uint64_t held_ = 0;                         // pages out, under mu_
};

}  // namespace mfqat::runtime
