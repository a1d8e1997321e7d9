// The fake-quant autograd op and QuantLinear: forward equals the mx core, backward is the
// straight-through estimator (plain or clipped).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "mfqat/train/api.h"
#include "mfqat/train/quant_linear.h"
#include "mfqat/train/trainer.h"

using namespace mfqat;
using namespace mfqat::train;

namespace {

torch::Tensor weights(std::int64_t out, std::int64_t in, std::uint64_t seed) {
  torch::manual_seed(seed);
  torch::Tensor w = torch::randn({out, in});
  w.index_put_({0, 3}, 1000.0f);  // an outlier makes its block's other elements small
  w.index_put_({1, 0}, 7.9f);
  return w;
}

bool bit_equal(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && std::memcmp(a.contiguous().data_ptr<float>(), b.contiguous().data_ptr<float>(), a.numel() * 4) == 0;
}

}  // namespace

TEST(FakeQuantOp, ForwardEqualsMxCore) {
  for (const char* name : {"mxint8", "mxint4", "mxfp4", "mxfp8_e4m3", "mxfp6_e3m2"}) {
    const mx::Format f = mx::find_format(name);
    const torch::Tensor w = weights(6, 70, 1);  // 70: a partial last block
    std::vector<float> want(w.numel());
    mx::fake_quantize(f, w.data_ptr<float>(), 6, 70, want.data());
    const torch::Tensor y = mx_fake_quant(w, f);
    EXPECT_EQ(0, std::memcmp(y.data_ptr<float>(), want.data(), want.size() * 4)) << name;
    // leading dimensions are flattened: blocks along the last axis only
    const torch::Tensor y3 = mx_fake_quant(w.reshape({2, 3, 70}), f);
    EXPECT_TRUE(bit_equal(y3.reshape({6, 70}), y)) << name;
  }
}

TEST(FakeQuantOp, PlainSteGradientIsTheGradientAtTheDequantizedWeights) {
  const mx::Format f = mx::find_format("mxint4");
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({5, 64});
  QuantLinear q(64, 8);
  q->set_format(f);
  const torch::Tensor target = torch::randn({5, 8});
  torch::Tensor loss = (q->forward(x) - target).pow(2).sum();
  loss.backward();
  // the same loss on an fp32 linear whose weight is the dequantized weight
  torch::Tensor wq = q->effective_weight().detach().requires_grad_(true);
  torch::Tensor loss_ref = (torch::nn::functional::linear(x, wq) - target).pow(2).sum();
  loss_ref.backward();
  EXPECT_TRUE(bit_equal(loss.detach(), loss_ref.detach()));
  EXPECT_TRUE(bit_equal(q->weight.grad(), wq.grad()));
}

TEST(FakeQuantOp, ClippedSteZeroesExactlyTheSaturatedElements) {
  const mx::Format f = mx::find_format("mxfp8_e4m3");
  // Block of 32: max 957 -> scale 2^1, 957/2 = 478.5 saturates to 448; 470 too; others do not.
  torch::Tensor w = torch::ones({2, 32});
  w.index_put_({0, 0}, 957.0f);
  w.index_put_({0, 1}, -940.0f);
  w.index_put_({1, 5}, 3.0f);
  w.requires_grad_(true);
  FakeQuantOptions o;
  o.ste = Ste::Clipped;
  const torch::Tensor y = mx_fake_quant(w, f, o);
  y.sum().backward();
  std::vector<std::uint8_t> sat(64);
  std::vector<float> tmp(64);
  mx::fake_quantize(f, w.detach().data_ptr<float>(), 2, 32, tmp.data(), {}, sat.data());
  const torch::Tensor g = w.grad();
  int zeros = 0;
  for (int i = 0; i < 64; ++i) {
    EXPECT_EQ(g.view({-1})[i].item<float>(), sat[i] ? 0.0f : 1.0f) << i;
    zeros += sat[i];
  }
  EXPECT_EQ(zeros, 2);
  // plain STE passes everything
  torch::Tensor w2 = w.detach().clone().requires_grad_(true);
  mx_fake_quant(w2, f).sum().backward();
  EXPECT_TRUE(bit_equal(w2.grad(), torch::ones({2, 32})));
}

TEST(QuantLinearModule, FormatSwitchingAndInputQuant) {
  QuantLinear q(40, 3, /*bias=*/true);
  torch::manual_seed(1);
  const torch::Tensor x = torch::randn({4, 40});
  const torch::Tensor y32 = q->forward(x);
  EXPECT_TRUE(bit_equal(y32, torch::nn::functional::linear(x, q->weight, q->bias)));
  q->set_format(mx::find_format("mxint2"));
  const torch::Tensor y2 = q->forward(x);
  EXPECT_FALSE(bit_equal(y2, y32));
  q->set_quantize_input(true);
  const torch::Tensor yi = q->forward(x);
  EXPECT_TRUE(bit_equal(yi, torch::nn::functional::linear(mx_fake_quant(x, mx::find_format("mxint2")), q->effective_weight(), q->bias)));
  q->set_format(std::nullopt);
  EXPECT_TRUE(bit_equal(q->forward(x), y32));
  EXPECT_THROW(mx_fake_quant(torch::zeros({3}, torch::kFloat64), mx::find_format("mxint8")), std::invalid_argument);
}

TEST(QuantLinearModule, TinyRegressionLearns) {
  // A few steps of QAT at mxint4 on a linear regression: the loss falls.
  torch::manual_seed(0);
  QuantLinear q(32, 4);
  q->set_format(mx::find_format("mxint4"));
  const torch::Tensor x = torch::randn({256, 32}), w_true = torch::randn({4, 32}) * 0.5;
  const torch::Tensor y = torch::nn::functional::linear(x, w_true);
  torch::optim::Adam opt(q->parameters(), torch::optim::AdamOptions(0.05));
  float first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    opt.zero_grad();
    torch::Tensor loss = (q->forward(x) - y).pow(2).mean();
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item<float>();
    last = loss.item<float>();
  }
  EXPECT_LT(last, first * 0.1f);
}

// Next-word accuracy counts a word when every byte of it and the byte that ends it were
// predicted; words cut by the window's ends are not counted.
TEST(NextWordAccuracy, CountsWholeWordsWithTheirEnd) {
  const std::string s = "xy ab, cd ef";  // window: start 0, bytes 1..11 predicted (hit[t] is byte t + 1)
  const std::vector<std::uint8_t> text(s.begin(), s.end());
  auto count = [&](std::int64_t start, std::vector<bool> hit) {
    std::int64_t words = 0, correct = 0;
    count_next_words(text, start, hit, words, correct);
    return std::pair{words, correct};
  };
  // bytes: 0x 1y 2' ' 3a 4b 5, 6' ' 7c 8d 9' ' 10e 11f. "xy" starts at 0 (no byte before it in the
  // window), "ef" has no end byte inside the window: "ab" (3..5) and "cd" (7..9) count.
  std::vector<bool> all(11, true);
  EXPECT_EQ(count(0, all), (std::pair<std::int64_t, std::int64_t>{2, 2}));
  auto miss = all;
  miss[5 - 1] = false;  // the ',' after "ab" mispredicted: "ab" is not the word greedy writes
  EXPECT_EQ(count(0, miss), (std::pair<std::int64_t, std::int64_t>{2, 1}));
  miss = all;
  miss[7 - 1] = false;  // the first letter of "cd"
  miss[2 - 1] = false;  // the space before "ab" is not part of any word
  EXPECT_EQ(count(0, miss), (std::pair<std::int64_t, std::int64_t>{2, 1}));
  // a window starting inside "ab": "b" follows a letter, so only "cd" counts
  EXPECT_EQ(count(3, std::vector<bool>(8, true)), (std::pair<std::int64_t, std::int64_t>{1, 1}));
}

// The first-order budget score's statistics (issue 22): with one window, the squared gradient of
// the window's mean loss, element by element; checked against central differences of the loss
// computed here in float64 (the model converted), at the weights the reference format derives.
TEST(SquaredGradients, EqualTheSquaredCentralDifferencesOfTheWindowLoss) {
  model::ModelConfig c;
  c.lm.dim = 32;
  c.lm.n_layers = 2;
  c.lm.n_heads = 2;
  c.lm.max_seq = 16;
  torch::manual_seed(7);
  const auto m = make_model(c);
  const std::string path = (std::filesystem::temp_directory_path() / "mfqat_sqgrad_test.safetensors").string();
  save_checkpoint(*m, path);
  std::vector<std::int32_t> text(200);
  for (std::size_t i = 0; i < text.size(); ++i) text[i] = static_cast<std::uint8_t>("It is a truth universally acknowledged"[i % 38]);  // bytes as tokens
  const std::string name = "blocks.1.w2.weight";
  std::vector<std::string> linears;
  for (int l = 0; l < 2; ++l) {
    for (const char* n : {"wq", "wk", "wv", "wo", "w1", "w2", "w3"}) linears.push_back("blocks." + std::to_string(l) + "." + n + ".weight");
  }
  const SquaredGradients g = squared_gradients(path, "mxint8", linears, text, 16, 1, 1);
  ASSERT_EQ(g.windows, 1);
  ASSERT_EQ(g.seq, 16);
  ASSERT_EQ(g.mean_sq.size(), 14u);
  const std::vector<float>& sq = g.mean_sq.at(name);
  // the reference model: every linear at mxint8 (a master quantized), in float64
  const auto ck = model::Checkpoint::open(path);
  const auto ref = make_model(c);
  std::map<std::string, mx::Format> per;
  for (const auto& n : linears) per.emplace(n, mx::find_format("mxint8"));
  load_weights(*ref, ck, std::nullopt, &per);
  ref->to(torch::kDouble);
  torch::Tensor win = torch::empty({1, 17}, torch::kInt64);
  for (int i = 0; i < 17; ++i) win[0][i] = static_cast<std::int64_t>(text[static_cast<std::size_t>(i)]);
  auto loss = [&] {
    torch::NoGradGuard ng;
    const torch::Tensor logits = ref->forward(win.slice(1, 0, 16));
    return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), win.slice(1, 1, 17).reshape({-1})).item<double>();
  };
  EXPECT_NEAR(loss(), g.loss, 1e-4);
  torch::Tensor w;
  for (auto& p : ref->named_parameters()) {
    if (p.key() == name) w = p.value();
  }
  ASSERT_TRUE(w.defined());
  const auto flat = w.view({-1});
  // the five largest elements, and a few at random
  std::vector<std::size_t> idx(sq.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::partial_sort(idx.begin(), idx.begin() + 5, idx.end(), [&](std::size_t a, std::size_t b) { return sq[a] > sq[b]; });
  idx.resize(5);
  idx.push_back(17);
  idx.push_back(sq.size() / 2);
  torch::NoGradGuard ng;  // the perturbations below edit a leaf
  for (const std::size_t i : idx) {
    const double h = 1e-4, w0 = flat[static_cast<std::int64_t>(i)].item<double>();
    flat[static_cast<std::int64_t>(i)] = w0 + h;
    const double lp = loss();
    flat[static_cast<std::int64_t>(i)] = w0 - h;
    const double lm = loss();
    flat[static_cast<std::int64_t>(i)] = w0;
    const double fd = (lp - lm) / (2 * h);
    EXPECT_NEAR(sq[i], fd * fd, 1e-3 * fd * fd + 1e-12) << "element " << i;
  }
  EXPECT_GT(sq[idx[0]], 0.0f);
  std::filesystem::remove(path);
}
