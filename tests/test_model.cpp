// The Llama-style LM: shapes, causality, rotary embeddings, format switching, config errors.
#include <gtest/gtest.h>

#include "mfqat/train/model.h"

using namespace mfqat;
using namespace mfqat::train;

namespace {

LmConfig tiny() {
  LmConfig c;
  c.dim = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.max_seq = 32;
  return c;
}

}  // namespace

TEST(Model, ShapesAndParameterNames) {
  torch::manual_seed(0);
  TransformerLm m(tiny());
  const torch::Tensor tok = torch::randint(0, 256, {3, 17}, torch::kInt64);
  const torch::Tensor y = m->forward(tok);
  EXPECT_EQ(y.sizes(), (std::vector<std::int64_t>{3, 17, 256}));
  EXPECT_EQ(m->quant_linears().size(), 14u);  // 7 per block
  EXPECT_EQ(m->quant_linears()[0].first, "blocks.0.wq.weight");
  EXPECT_EQ(tiny().hidden(), 192);  // 8*64/3 = 170 -> 192
  auto names = m->named_parameters();
  EXPECT_TRUE(names.contains("blocks.1.w3.weight"));
  EXPECT_TRUE(names.contains("tok_emb.weight"));
  EXPECT_THROW(m->forward(torch::zeros({1, 33}, torch::kInt64)), std::invalid_argument);
}

TEST(Model, CausalMask) {
  torch::manual_seed(1);
  TransformerLm m(tiny());
  torch::Tensor a = torch::randint(0, 256, {1, 20}, torch::kInt64);
  torch::Tensor b = a.clone();
  b.index_put_({0, 12}, (a.index({0, 12}).item<std::int64_t>() + 1) % 256);
  const torch::Tensor ya = m->forward(a), yb = m->forward(b);
  EXPECT_TRUE(torch::equal(ya.slice(1, 0, 12), yb.slice(1, 0, 12)));  // the past does not see the future
  EXPECT_FALSE(torch::equal(ya.slice(1, 12, 13), yb.slice(1, 12, 13)));
}

TEST(Model, RopeIsARotation) {
  torch::manual_seed(2);
  const torch::Tensor x = torch::randn({1, 5, 2, 8});
  const std::int64_t half = 4;
  const torch::Tensor inv = torch::pow(10000.0, -torch::arange(0, half, torch::kFloat64) * 2.0 / 8);
  const torch::Tensor ang = torch::outer(torch::arange(0, 5, torch::kFloat64), inv);
  const torch::Tensor y = apply_rope(x, torch::cos(ang).to(torch::kFloat32), torch::sin(ang).to(torch::kFloat32));
  EXPECT_TRUE(torch::allclose(y.norm(2, -1), x.norm(2, -1), 1e-5, 1e-6));  // norms kept
  EXPECT_TRUE(torch::equal(y.select(1, 0), x.select(1, 0)));                // position 0 unchanged
}

TEST(Model, FormatSwitching) {
  torch::manual_seed(3);
  TransformerLm m(tiny());
  const torch::Tensor tok = torch::randint(0, 256, {2, 9}, torch::kInt64);
  const torch::Tensor y32 = m->forward(tok);
  m->set_format(mx::find_format("mxint4"));
  const torch::Tensor y4 = m->forward(tok);
  EXPECT_FALSE(torch::equal(y32, y4));
  for (auto& [n, l] : m->quant_linears()) EXPECT_EQ(l->format()->name, "mxint4") << n;
  m->set_format(std::nullopt);
  EXPECT_TRUE(torch::equal(m->forward(tok), y32));
}

TEST(Model, ConfigErrorsAreOneLine) {
  const LmConfig c = LmConfig::from_json(R"({"dim": 96, "n_heads": 6, "n_layers": 3})", "c.json");
  EXPECT_EQ(c.head_dim(), 16);
  EXPECT_EQ(LmConfig::from_json(c.to_json(), "x").hidden(), c.hidden());
  for (auto [text, needle] : {std::pair{"{\"dim\": 100, \"n_heads\": 3}", "does not divide"},
                              std::pair{"{\"dim\": \"big\"}", "dim must be an integer"},
                              std::pair{"{\"layers\": 2}", "unknown field 'layers'"},
                              std::pair{"{\"n_layers\": 0}", "out of range"},
                              std::pair{"[1]", "JSON object"},
                              std::pair{"{oops", "not valid JSON"}}) {
    try {
      LmConfig::from_json(text, "c.json");
      FAIL() << text;
    } catch (const std::invalid_argument& e) {
      const std::string w = e.what();
      EXPECT_EQ(w.rfind("c.json: ", 0), 0u) << w;
      EXPECT_NE(w.find(needle), std::string::npos) << w;
      EXPECT_EQ(w.find('\n'), std::string::npos) << w;
    }
  }
}

TEST(Model, TinyLmLossFalls) {
  // Memorise one repeated byte pattern for a few steps: the loss must fall.
  torch::manual_seed(4);
  at::set_num_threads(2);
  TransformerLm m(tiny());
  m->set_format(mx::find_format("mxfp4"));
  const std::string text = "abcabcabdabcabcabdabcabcabdabcab";
  torch::Tensor tok = torch::empty({1, 32}, torch::kInt64);
  for (int i = 0; i < 32; ++i) tok.index_put_({0, i}, static_cast<std::int64_t>(text[i]));
  torch::optim::AdamW opt(m->parameters(), torch::optim::AdamWOptions(3e-3));
  float first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    opt.zero_grad();
    const torch::Tensor logits = m->forward(tok.slice(1, 0, 31));
    torch::Tensor loss = torch::nn::functional::cross_entropy(logits.reshape({-1, 256}), tok.slice(1, 1, 32).reshape({-1}));
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item<float>();
    last = loss.item<float>();
  }
  EXPECT_LT(last, first * 0.5f);
}
