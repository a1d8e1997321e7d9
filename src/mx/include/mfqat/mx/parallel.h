// A small fixed thread pool for data-parallel loops over large tensors.
#pragma once

#include <cstdint>
#include <functional>

namespace mfqat {

// The most threads parallel_for uses (a region's part count must fit the pool's 16-bit field).
constexpr int kMaxThreads = 4096;

// Threads used by parallel_for (default: MFQAT_NUM_THREADS or the hardware's count), clamped
// to [1, kMaxThreads].
int num_threads();
void set_num_threads(int n);

// Whether the calling thread is running a part of a parallel region (nested calls run inline).
bool inside_parallel_region();

// Calls fn(begin, end) on disjoint chunks covering [0, n); chunk sizes are multiples of `grain`
// (except the last). Runs inline when one chunk suffices or when called from inside a region.
// The first exception thrown by fn is rethrown after every chunk has finished. Safe to call
// from several threads at once (regions then run one after another).
void parallel_for(std::int64_t n, std::int64_t grain, const std::function<void(std::int64_t, std::int64_t)>& fn);

}  // namespace mfqat
