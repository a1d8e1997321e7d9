// A small fixed thread pool for data-parallel loops over large tensors.
#pragma once

#include <cstdint>
#include <functional>

namespace mfqat {

// Threads used by parallel_for (default: MFQAT_NUM_THREADS or the hardware's count).
int num_threads();
void set_num_threads(int n);

// Calls fn(begin, end) on disjoint chunks covering [0, n); chunk sizes are multiples of `grain`
// (except the last). Runs inline when one chunk suffices. Exceptions from fn are rethrown.
void parallel_for(std::int64_t n, std::int64_t grain, const std::function<void(std::int64_t, std::int64_t)>& fn);

}  // namespace mfqat
