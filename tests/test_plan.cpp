// Bits budgets (src/plan, issue 22): the knapsack solvers against exhaustive search, the
// engine's mixed-precision weights against its uniform ones, the sensitivity measure, files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "common.h"
#include "mfqat/plan/plan.h"
#include "mfqat/runtime/engine.h"

using namespace mfqat;

namespace {

std::vector<plan::Layer> random_layers(std::mt19937& rng, std::size_t n) {
  const std::vector<std::pair<std::string, double>> fmts = {{"a8", 8.25}, {"a6", 6.25}, {"a5", 5.25}, {"a4", 4.25}, {"a2", 2.25}};
  std::vector<plan::Layer> ls;
  for (std::size_t i = 0; i < n; ++i) {
    plan::Layer l;
    l.name = std::to_string(i);
    l.weights = std::uniform_int_distribution<std::int64_t>(1, 40)(rng) * 1024;
    double c = 0;
    for (const auto& [f, b] : fmts) {
      l.options.push_back({f, b, c});
      c += std::uniform_real_distribution<double>(0, 1)(rng) * (b < 5 ? 3 : 1);
    }
    ls.push_back(l);
  }
  return ls;
}

// The least cost over every plan within the budget (5^n plans).
double brute_force(const std::vector<plan::Layer>& ls, double budget) {
  std::vector<std::size_t> c(ls.size(), 0);
  double best = INFINITY;
  while (true) {
    if (plan::average_bits(ls, c) <= budget + 1e-12) best = std::min(best, plan::predicted_cost(ls, c));
    std::size_t i = 0;
    while (i < c.size() && ++c[i] == ls[i].options.size()) c[i++] = 0;
    if (i == c.size()) break;
  }
  return best;
}

}  // namespace

TEST(PlanSolver, DpIsOptimalWithinItsRoundingAndGreedyIsNeverBetter) {
  std::mt19937 rng(7);
  for (int t = 0; t < 30; ++t) {
    const auto ls = random_layers(rng, 6);
    for (const double budget : {3.0, 4.5, 5.3, 6.0, 7.9}) {
      const double opt = brute_force(ls, budget);
      const auto dp = plan::solve_dp(ls, budget, 100000);
      const auto gr = plan::solve_greedy(ls, budget);
      EXPECT_LE(dp.bits, budget + 1e-12);
      EXPECT_LE(gr.bits, budget + 1e-12);
      EXPECT_GE(dp.cost, opt - 1e-12);  // nothing beats the exhaustive optimum
      // bits rounded up to 1e-5 of the budget can only lose plans within that much of it
      EXPECT_LE(dp.cost, brute_force(ls, budget * (1 - 6 * 1e-5)) + 1e-12) << t << " " << budget;
      EXPECT_LE(dp.cost, gr.cost + 1e-12);
      EXPECT_NEAR(dp.cost, plan::predicted_cost(ls, dp.choice), 1e-12);
      // coarse steps: plans are lost near the budget, but none returned is over it
      for (const int units : {7, 10, 37}) {
        try {
          EXPECT_LE(plan::solve_dp(ls, budget, units).bits, budget + 1e-12) << units;
        } catch (const std::invalid_argument&) {  // every plan that fits the steps is over: refused, not returned
        }
      }
    }
  }
}

TEST(PlanSolver, BudgetsEdgesAndMonotoneCosts) {
  std::mt19937 rng(3);
  const auto ls = random_layers(rng, 4);
  // at the top precision's bits everything stays at 8.25 and costs nothing
  EXPECT_EQ(plan::solve_dp(ls, 8.25).cost, 0.0);
  EXPECT_EQ(plan::solve_greedy(ls, 8.25).cost, 0.0);
  // below the least precise plan: refused, by both
  EXPECT_THROW(plan::solve_dp(ls, 2.0), std::invalid_argument);
  EXPECT_THROW(plan::solve_greedy(ls, 2.0), std::invalid_argument);
  // monotone: costs never fall with fewer bits, never below zero
  plan::Layer l{"x", 10, {{"a8", 8.25, 0.0}, {"a6", 6.25, -0.2}, {"a4", 4.25, 0.5}, {"a5", 5.25, 0.1}}};
  const auto m = plan::monotone({l})[0];
  EXPECT_EQ(m.options[1].cost, 0.0);
  EXPECT_EQ(m.options[3].cost, 0.1);
  EXPECT_EQ(m.options[2].cost, 0.5);
  // budgets as bits or bytes
  EXPECT_DOUBLE_EQ(plan::parse_budget("4.5", 1000), 4.5);
  EXPECT_DOUBLE_EQ(plan::parse_budget("1KB", 1000), 8.0);
  EXPECT_DOUBLE_EQ(plan::parse_budget("3.2GB", 6400000000), 4.0);
  for (const char* bad : {"", "x", "4.5TB", "-1", "0", "nan"}) EXPECT_THROW(plan::parse_budget(bad, 1000), std::invalid_argument) << bad;
}

TEST(PlanEngine, MixedWeightsAreEachLinearsOwnFormat) {
  auto e = runtime::Engine::synthetic(small_lm(32), mx::find_format("mxint8"), 5);
  const auto lin = e->linears();
  ASSERT_EQ(lin.size(), 14u);  // 2 layers x 7
  // every linear named, all at mxint4: the same bytes and the same logits as the uniform weights
  std::map<std::string, std::string> all4;
  for (const auto& l : lin) all4[l.first] = "mxint4";
  const auto u4 = e->weights("mxint4"), m4 = e->weights_mixed(all4, "mxint8", "plan");
  EXPECT_DOUBLE_EQ(m4->bits_per_weight, 4.25);
  const std::vector<int> toks = {1, 70, 200, 33, 9, 120};
  runtime::Session su(*e, u4), sm(*e, m4);
  const auto a = su.feed_all(toks), b = sm.feed_all(toks);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  // a mix: layer 0's w1 at mxint2, the rest at the anchor's mxint8
  const auto mix = e->weights_mixed({{"blocks.0.w1.weight", "mxint2"}}, "mxint8", "mix");
  const auto u8 = e->weights("mxint8"), u2 = e->weights("mxint2");
  const auto& L = mix->layers[0].w1;
  EXPECT_EQ(L.mx.format->name, "mxint2");
  EXPECT_EQ(std::memcmp(L.mx.elements, u2->layers[0].w1.mx.elements, L.mx.format->packed_row_bytes(L.cols) * L.rows), 0);
  EXPECT_EQ(std::memcmp(L.mx.scales, u2->layers[0].w1.mx.scales, L.mx.format->blocks_per_row(L.cols) * L.rows), 0);
  EXPECT_EQ(mix->layers[0].w2.mx.elements, u8->layers[0].w2.mx.elements);  // the anchor's own bytes, borrowed
  const double n1 = static_cast<double>(lin[4].second);
  double total = 0;
  for (const auto& l : lin) total += static_cast<double>(l.second);
  EXPECT_NEAR(mix->bits_per_weight, (8.25 * (total - n1) + 2.25 * n1) / total, 1e-12);
  // a mixed model runs and differs from both uniform ones
  runtime::Session s8(*e, u8), sx(*e, mix);
  const auto c8 = s8.feed_all(toks), cx = sx.feed_all(toks);
  EXPECT_NE(std::memcmp(c8.data(), cx.data(), c8.size() * sizeof(float)), 0);
  // bad plans: one line naming the thing
  EXPECT_THROW(e->weights_mixed({{"blocks.9.w1.weight", "mxint4"}}, "mxint8", "x"), std::invalid_argument);
  EXPECT_THROW(e->weights_mixed({{"blocks.0.w1.weight", "mxfp4_e2m1"}}, "mxint8", "x"), std::invalid_argument);
  EXPECT_THROW(e->weights_mixed({{"blocks.0.w1.weight", "mxint9"}}, "mxint8", "x"), std::invalid_argument);
}

TEST(PlanEngine, NamedPlansAreServedLikeFormats) {
  auto e = runtime::Engine::synthetic(small_lm(32), mx::find_format("mxint8"), 5);
  const auto lin = e->linears();
  std::map<std::string, std::string> all6;
  for (const auto& l : lin) all6[l.first] = "mxint6";
  std::vector<std::string> derived;
  e->set_derive_observer([&](const std::string& k) { derived.push_back(k); });
  EXPECT_DOUBLE_EQ(e->add_plan("budget:6", all6, "mxint8"), 6.25);
  EXPECT_DOUBLE_EQ(e->add_plan("plan:one2", {{"blocks.1.w2.weight", "mxint2"}}, "anchor"),
                   e->weights_mixed({{"blocks.1.w2.weight", "mxint2"}}, "mxint8", "x")->bits_per_weight);
  EXPECT_TRUE(e->is_plan("budget:6"));
  EXPECT_EQ(e->canonical_format("budget:6"), "budget:6");
  EXPECT_DOUBLE_EQ(e->bits_per_weight("budget:6"), 6.25);
  EXPECT_DOUBLE_EQ(e->bits_per_weight("anchor"), 8.25);
  const auto fs = e->formats();
  ASSERT_GE(fs.size(), 3u);
  EXPECT_EQ(fs[fs.size() - 3], "budget:6");  // after the formats, before fp32
  EXPECT_EQ(fs[fs.size() - 2], "plan:one2");
  // derived once, cached under its name, the same logits as the uniform format
  const auto p1 = e->weights("budget:6"), p2 = e->weights("budget:6");
  EXPECT_EQ(p1.get(), p2.get());
  EXPECT_EQ(p1->format, "budget:6");
  EXPECT_EQ(std::count(derived.begin(), derived.end(), "budget:6"), 1);
  const std::vector<int> toks = {1, 70, 200, 33, 9, 120};
  runtime::Session su(*e, e->weights("mxint6")), sp(*e, p1);
  const auto a = su.feed_all(toks), b = sp.feed_all(toks);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  bool listed = false;
  for (const auto& c : e->cache()) listed |= c.format == "budget:6";
  EXPECT_TRUE(listed);
  e->evict("budget:6");
  for (const auto& c : e->cache()) EXPECT_NE(c.format, "budget:6");
  // refused: a taken name, a format's name, reserved names, a plan that does not fit
  EXPECT_THROW(e->add_plan("budget:6", all6, "mxint8"), std::invalid_argument);
  EXPECT_THROW(e->add_plan("mxint4", all6, "mxint8"), std::invalid_argument);
  EXPECT_THROW(e->add_plan("auto", all6, "mxint8"), std::invalid_argument);
  EXPECT_THROW(e->add_plan("x", {{"blocks.0.w1.weight", "mxfp4_e2m1"}}, "mxint8"), std::invalid_argument);
  EXPECT_THROW(e->add_plan("y", {{"blocks.7.w1.weight", "mxint4"}}, "mxint8"), std::invalid_argument);
  EXPECT_FALSE(e->is_plan("x"));
  EXPECT_THROW(e->weights("budget:7"), std::invalid_argument);
}

// The first-order score: 1/2 * T * sum g2 * (w_f - w_ref)^2 over each linear's weights.
TEST(PlanFisher, CostIsTheGradientWeightedSquaredDifferenceOfTheDerivedWeights) {
  auto e = runtime::Engine::synthetic(small_lm(32), mx::find_format("mxint8"), 5);
  std::map<std::string, std::vector<float>> g2;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0, 2);
  for (const auto& [name, n] : e->linears()) {
    auto& v = g2[name];
    for (std::int64_t i = 0; i < n; ++i) v.push_back(u(rng));
  }
  const std::int64_t T = 16;
  const auto s = plan::fisher(*e, {"mxint8", "mxint6", "mxint4", "mxint2"}, g2, T, 3, 2.5);
  EXPECT_EQ(s.score, "fisher");
  EXPECT_EQ(s.reference, "mxint8");
  EXPECT_DOUBLE_EQ(s.reference_loss, 2.5);
  ASSERT_EQ(s.layers.size(), 14u);
  // blocks.0.w1 by hand from the uniform weights' bytes
  const auto& L = s.layers[4];
  ASSERT_EQ(L.name, "blocks.0.w1.weight");
  auto deq = [&](const std::string& f) {
    const auto& lin = e->weights(f)->layers[0].w1;
    std::vector<float> v(static_cast<std::size_t>(lin.rows * lin.cols));
    mx::dequantize(*lin.mx.format, lin.mx.elements, lin.mx.scales, lin.rows, lin.cols, v.data());
    return v;
  };
  const auto w8 = deq("mxint8");
  for (std::size_t f = 0; f < 4; ++f) {
    const auto wf = deq(L.options[f].format);
    double want = 0;
    for (std::size_t i = 0; i < wf.size(); ++i) want += g2.at(L.name)[i] * (double(wf[i]) - w8[i]) * (double(wf[i]) - w8[i]);
    EXPECT_NEAR(L.options[f].cost, 0.5 * T * want, 1e-9 * (1 + want)) << L.options[f].format;
  }
  EXPECT_EQ(L.options[0].cost, 0.0);
  for (const auto& l : s.layers) {  // fewer bits, larger error: the score orders every linear's formats
    for (std::size_t f = 1; f < l.options.size(); ++f) EXPECT_GT(l.options[f].cost, l.options[f - 1].cost) << l.name;
  }
  // a linear without gradients, or with the wrong count, is refused
  auto missing = g2;
  missing.erase("blocks.1.wo.weight");
  EXPECT_THROW(plan::fisher(*e, {"mxint8", "mxint4"}, missing, T, 3, 0), std::invalid_argument);
  missing = g2;
  missing["blocks.1.wo.weight"].pop_back();
  EXPECT_THROW(plan::fisher(*e, {"mxint8", "mxint4"}, missing, T, 3, 0), std::invalid_argument);
  // the score survives the file
  const std::string path = (std::filesystem::temp_directory_path() / "mfqat_fisher_test.json").string();
  plan::write_sensitivity(path, s);
  EXPECT_EQ(plan::read_sensitivity(path).score, "fisher");
  std::filesystem::remove(path);
}

TEST(PlanFiles, ModelChecksAndBudgetBounds) {
  std::vector<plan::Layer> ls(2);
  ls[0] = {"a.weight", 100, {{"mxint8", 8.25, 0}, {"mxint4", 4.25, 0.1}}};
  ls[1] = {"b.weight", 300, {{"mxint8", 8.25, 0}, {"mxint4", 4.25, 0.2}}};
  EXPECT_THROW(plan::solve_budget(ls, 8.3, "dp"), std::invalid_argument);   // above the reference
  EXPECT_THROW(plan::solve_budget(ls, 4.0, "dp"), std::invalid_argument);   // below the least precise plan
  EXPECT_THROW(plan::solve_budget(ls, 6.0, "lp"), std::invalid_argument);   // no such solver
  const auto sol = plan::solve_budget(ls, 8.25, "greedy");
  EXPECT_EQ(sol.choice, (std::vector<std::size_t>{0, 0}));
  const auto dp = plan::solve_budget(ls, 7.25, "dp");  // only a (100 of 400 weights) can drop: 8.25 - 1 = 7.25
  EXPECT_EQ(dp.choice, (std::vector<std::size_t>{1, 0}));
  plan::Sensitivity s;
  s.reference = "mxint8";
  s.layers = ls;
  const plan::Linears model = {{"a.weight", 100}, {"b.weight", 300}};
  EXPECT_NO_THROW(plan::check_model(s, model, "s.json"));
  EXPECT_THROW(plan::check_model(s, {{"a.weight", 100}, {"b.weight", 301}}, "s.json"), std::invalid_argument);
  EXPECT_THROW(plan::check_model(s, {{"a.weight", 100}, {"b.weight", 300}, {"c.weight", 1}}, "s.json"), std::invalid_argument);
  const plan::PlanFile p = plan::make_plan(s, dp, 7.25, "dp");
  EXPECT_NO_THROW(plan::check_model(p, model, "p.json"));
  try {
    plan::check_model(p, {{"a.weight", 200}, {"b.weight", 300}}, "p.json");
    ADD_FAILURE() << "a plan for another shape was taken";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "p.json: a.weight has 100 weights, the model's 200 (made for another model)");
  }
  EXPECT_THROW(plan::check_model(p, {{"b.weight", 300}}, "p.json"), std::invalid_argument);
  // the weights survive the file; a hand-written plan without them is checked by name only
  const std::string path = (std::filesystem::temp_directory_path() / "mfqat_plan_files_test.json").string();
  plan::write_plan(path, p);
  EXPECT_EQ(plan::read_plan(path).weights, p.weights);
  std::ofstream(path) << R"({"mfqat": "plan", "reference": "mxint8", "formats": {"a.weight": "mxint4"}})";
  EXPECT_NO_THROW(plan::check_model(plan::read_plan(path), model, path));
  std::ofstream(path) << R"({"mfqat": "plan", "reference": "mxint8", "formats": {"a.weight": "mxint4"}, "weights": {"z": 5}})";
  EXPECT_THROW(plan::read_plan(path), std::runtime_error);
  std::filesystem::remove(path);
}

TEST(PlanSensitivity, MeasuresEachLinearAloneAndRoundTripsThroughFiles) {
  auto e = runtime::Engine::synthetic(small_lm(32), mx::find_format("mxint8"), 6);
  std::vector<std::uint8_t> text(2000);
  std::mt19937 rng(1);
  for (auto& c : text) c = static_cast<std::uint8_t>(std::uniform_int_distribution<int>(32, 126)(rng));
  const auto s = plan::measure(*e, {"mxint8", "mxint4", "mxint2"}, text, 32, 8);
  ASSERT_EQ(s.layers.size(), 14u);
  EXPECT_EQ(s.reference, "mxint8");
  // the reference loss is the uniform mxint8 loss; a cost is the loss with that linear alone changed
  EXPECT_DOUBLE_EQ(s.reference_loss, runtime::perplexity(*e, e->weights("mxint8"), text, 32, 8).loss);
  const auto& l3 = s.layers[3];
  EXPECT_EQ(l3.options[0].cost, 0.0);
  EXPECT_DOUBLE_EQ(l3.options[2].bits, 2.25);
  EXPECT_DOUBLE_EQ(l3.options[2].cost,
                   runtime::perplexity(*e, e->weights_mixed({{l3.name, "mxint2"}}, "mxint8", "x"), text, 32, 8).loss - s.reference_loss);
  double any = 0;
  for (const auto& l : s.layers) any += std::abs(l.options[2].cost);
  EXPECT_GT(any, 0.0);
  // files round-trip; bad files fail naming the file
  const auto dir = std::filesystem::temp_directory_path() / ("mfqat_plan_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string sf = (dir / "s.json").string(), pf = (dir / "p.json").string(), bad = (dir / "bad.json").string();
  plan::write_sensitivity(sf, s);
  const auto r = plan::read_sensitivity(sf);
  ASSERT_EQ(r.layers.size(), s.layers.size());
  EXPECT_EQ(r.layers[3].options[2].cost, l3.options[2].cost);
  const auto sol = plan::solve_dp(plan::monotone(s.layers), 5.0);
  plan::write_plan(pf, plan::make_plan(s, sol, 5.0, "dp"));
  const auto p = plan::read_plan(pf);
  EXPECT_EQ(p.formats.size(), 14u);
  EXPECT_NEAR(e->weights_mixed(p.formats, p.reference, "p")->bits_per_weight, sol.bits, 1e-12);
  for (const char* body : {"", "[]", "{\"mfqat\": \"plan\"}", "{\"mfqat\": \"sensitivity\", \"layers\": 3}", "{\"mfqat\": \"plan\", \"reference\": \"mxint8\", \"formats\": {}}"}) {
    std::ofstream(bad) << body;
    EXPECT_THROW(plan::read_plan(bad), std::runtime_error) << body;
    EXPECT_THROW(plan::read_sensitivity(bad), std::runtime_error) << body;
  }
  std::filesystem::remove_all(dir);
}
