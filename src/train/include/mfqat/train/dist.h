// Data-parallel training over PyTorch's c10d process groups (Gloo backend, CPU).
//
// Every rank holds the whole model and draws the same global batch and format sequence from the
// same seeded RNG; rank r trains on the items b with b % world_size == r. Each rank's loss is
// scaled by its share of the global batch, so that the all-reduced (summed) gradients equal the
// gradients of the mean loss over the global batch, which is what one process computes. The
// optimizer step then runs identically everywhere, so the replicas stay equal (up to float
// summation order) without broadcasting weights after the start.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace mfqat::train {

struct DistOptions {
  int world_size = 1;
  int rank = 0;
  std::string master = "127.0.0.1:29500";  // ADDR:PORT of rank 0's TCPStore
  double timeout_s = 300;                   // rendezvous and every collective
  double bucket_mb = 25;                    // gradient all-reduce bucket size (as torch DDP's default)
};

// "ADDR:PORT" -> {ADDR, PORT}; throws std::invalid_argument naming the text.
std::pair<std::string, std::uint16_t> parse_master(const std::string& s);

class Comm {
 public:
  // Rendezvous through rank 0's TCPStore at opt.master, then a Gloo process group. Throws a
  // one-line std::runtime_error naming the address on a timeout or a refused connection.
  static std::unique_ptr<Comm> connect(const DistOptions& opt);
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Rank 0's tensors overwrite everyone else's (in place).
  virtual void broadcast(std::vector<torch::Tensor> tensors, const std::string& what) = 0;
  // Sums every defined .grad() of `params` and `loss` over the ranks, in buckets of at most
  // bucket_mb, all buckets in flight at once. Returns the summed loss. A lost peer or a timeout
  // throws a one-line std::runtime_error that names the step.
  virtual double allreduce_gradients(const std::vector<torch::Tensor>& params, double loss, std::int64_t step) = 0;
  virtual void barrier(const std::string& what) = 0;
  // Seconds spent in all-reduce so far (packing, communication, unpacking).
  virtual double comm_seconds() const = 0;
};

}  // namespace mfqat::train
