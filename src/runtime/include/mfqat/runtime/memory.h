// Large, long-lived buffers: HugeBuffer (2 MiB pages from 8 MiB up).
#pragma once

#include <cstddef>
#include <cstdint>

namespace mfqat::runtime {

// Memory for the large, long-lived buffers: a format's weights, the synthetic anchor, KV caches.
// From 8 MiB up it is aligned to 2 MiB and advised for transparent huge pages (a no-op where THP
// is off): where page walks are expensive (a VM with shadow page tables) decode reads its weights
// faster from 2 MiB pages, and a fresh KV cache no longer faults in two 4 KiB pages per layer and
// token (docs/perf.md). Left uninitialised.
class HugeBuffer {
 public:
  explicit HugeBuffer(std::size_t bytes);
  ~HugeBuffer();
  HugeBuffer(const HugeBuffer&) = delete;
  HugeBuffer& operator=(const HugeBuffer&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(p_); }
  std::uint64_t bytes() const { return bytes_; }
  bool huge() const { return huge_; }  // 2 MiB-aligned and advised
  static std::uint64_t rounded(std::size_t bytes);  // what bytes() will be for a buffer of `bytes`

 private:
  void* p_ = nullptr;
  std::uint64_t bytes_ = 0;
  bool huge_ = false;
};

}  // namespace mfqat::runtime
