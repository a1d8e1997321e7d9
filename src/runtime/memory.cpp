#include "mfqat/runtime/memory.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <new>

namespace mfqat::runtime {

namespace {
constexpr std::size_t kHuge = std::size_t{2} << 20;

// Huge pages from 8 MiB up; a small model's buffers stay in 4 KiB pages (one 2 MiB page would
// be zeroed on first touch for a cache of a few KiB).
std::size_t align_for(std::size_t bytes) { return bytes >= 4 * kHuge ? kHuge : 64; }
}  // namespace

std::uint64_t HugeBuffer::rounded(std::size_t bytes) {
  const std::size_t align = align_for(bytes);
  return (std::max<std::size_t>(bytes, 1) + align - 1) / align * align;
}

HugeBuffer::HugeBuffer(std::size_t bytes) {
  const std::size_t align = align_for(bytes);
  huge_ = align == kHuge;
  bytes_ = rounded(bytes);
  p_ = std::aligned_alloc(align, bytes_);
  if (!p_) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  if (huge_) madvise(p_, bytes_, MADV_HUGEPAGE);  // advice only: without THP the pages stay 4 KiB
#endif
}

HugeBuffer::~HugeBuffer() { std::free(p_); }

}  // namespace mfqat::runtime
