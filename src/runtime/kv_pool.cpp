#include "mfqat/runtime/kv_pool.h"

#include <algorithm>

namespace mfqat::runtime {

KvPool::KvPool(std::size_t page_floats, std::uint64_t idle_limit_bytes)
    : page_floats_(std::max<std::size_t>(page_floats, 1)),
      page_bytes_(HugeBuffer::rounded(page_floats_ * sizeof(float))),
      idle_limit_(idle_limit_bytes) {}

KvPool::~KvPool() = default;

std::unique_ptr<HugeBuffer> KvPool::take() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++held_;
    if (!idle_.empty()) {
      auto p = std::move(idle_.back());  // the most recently used: likeliest still in cache
      idle_.pop_back();
      return p;
    }
  }
  try {
    return std::make_unique<HugeBuffer>(page_floats_ * sizeof(float));
  } catch (...) {
    std::lock_guard<std::mutex> lk(mu_);
    --held_;
    throw;
  }
}

void KvPool::give(std::unique_ptr<HugeBuffer> page) noexcept {
  if (!page) return;
  std::unique_ptr<HugeBuffer> freed;  // freed outside the lock
  std::lock_guard<std::mutex> lk(mu_);
  --held_;
  if ((idle_.size() + 1) * page_bytes_ <= idle_limit_) {
    try {
      idle_.push_back(std::move(page));
      return;
    } catch (...) {  // no room in the vector: the page is freed
    }
  }
  freed = std::move(page);
}

void KvPool::set_idle_limit(std::uint64_t bytes) {
  std::vector<std::unique_ptr<HugeBuffer>> freed;
  std::lock_guard<std::mutex> lk(mu_);
  idle_limit_ = bytes;
  while (!idle_.empty() && idle_.size() * page_bytes_ > idle_limit_) {
    freed.push_back(std::move(idle_.front()));  // the oldest go first
    idle_.erase(idle_.begin());
  }
}

std::uint64_t KvPool::idle_bytes() const {
  std::lock_guard<std::mutex> lk(mu_);
  return idle_.size() * page_bytes_;
}

std::uint64_t KvPool::held_bytes() const {
  std::lock_guard<std::mutex> lk(mu_);
  return held_ * page_bytes_;
}

}  // namespace mfqat::runtime
