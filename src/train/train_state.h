// Internal to src/train/: the training loop's resumable state (trainer.cpp writes and reads it
// through checkpoints.cpp).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "mfqat/train/trainer.h"

namespace mfqat::train::detail {

// Where the loop is: the next step, and the fixed fine-tune set (train_sequences > 0).
struct LoopState {
  std::int64_t step = 0;
  std::vector<std::int64_t> fixed;
};

// Atomic and durable: serialised in memory, then written beside PATH, fsync'ed and renamed over
// it (ckpt::AtomicWriter), so a kill or a full disk at any point leaves the previous state.
void save_state(QuantModelImpl& model, const torch::optim::AdamW& adam, const LoopState& st, const std::mt19937_64& rng,
                const std::string& path);
// Throws naming PATH when it is missing, unreadable or for another model config.
void load_state(QuantModelImpl& model, torch::optim::AdamW& adam, LoopState* st, std::mt19937_64* rng, const std::string& path);

}  // namespace mfqat::train::detail
