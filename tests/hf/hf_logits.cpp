// Logits of every position of a token sequence from the elastic engine (or, built with
// MFQAT_HF_LOGITS_TORCH, the trainer's libtorch model), written as .npy [T, vocab] for the Python
// reference comparison (tests/hf/hf_parity_test.py). The engine runs prompts with fp32
// activations here (--prefill-acts fp32).
//   hf_logits MODEL FORMAT IDS OUT.npy     (IDS: comma-separated token ids; FORMAT: fp32 or an MX format)
#include <cstdio>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include "mfqat/ckpt/npy.h"
#include "mfqat/model/checkpoint.h"
#if MFQAT_HF_LOGITS_TORCH
#include "mfqat/train/model.h"
#include "mfqat/train/trainer.h"
#else
#include "mfqat/runtime/engine.h"
#endif

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s MODEL FORMAT IDS OUT.npy\n", argv[0]);
    return 2;
  }
  try {
    std::vector<int> ids;
    std::stringstream ss(argv[3]);
    for (std::string t; std::getline(ss, t, ',');) ids.push_back(std::stoi(t));
    const std::string format = argv[2];
    mfqat::ckpt::Matrix m;
#if MFQAT_HF_LOGITS_TORCH
    const mfqat::model::Checkpoint ck = mfqat::model::Checkpoint::open(argv[1]);
    auto model = mfqat::train::make_model(ck.config());
    mfqat::train::load_weights(*model, ck);
    if (format != "fp32") model->set_format(mfqat::mx::find_format(format));
    torch::NoGradGuard ng;
    const torch::Tensor x = torch::tensor(std::vector<std::int64_t>(ids.begin(), ids.end()), torch::kInt64).view({1, -1});
    const torch::Tensor y = model->forward(x).contiguous();
    m.rows = y.size(1);
    m.cols = y.size(2);
    m.data.assign(y.data_ptr<float>(), y.data_ptr<float>() + y.numel());
#else
    auto e = mfqat::runtime::Engine::open(argv[1]);
    // The model's semantics against the references: prompts in fp32 activations (the int8
    // prompt GEMM has its own bitwise and bound tests, and its perplexity cost is measured).
    mfqat::runtime::KernelOptions k;
    k.int8_gemm = false;
    e->set_kernels(k);
    mfqat::runtime::Session s(*e, e->weights(format));
    m.data = s.feed_all(ids);
    m.rows = static_cast<std::int64_t>(ids.size());
    m.cols = e->config().vocab;
#endif
    mfqat::ckpt::write_npy(argv[4], m);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "hf_logits: %s\n", ex.what());
    return 1;
  }
  return 0;
}
