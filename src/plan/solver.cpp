// The multiple-choice knapsack behind a bits budget: exact DP on a discretised budget, and the
// greedy baseline it is compared with (docs/budget.md).
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "mfqat/plan/plan.h"

namespace mfqat::plan {

namespace {
std::int64_t total_weights(const std::vector<Layer>& layers) {
  std::int64_t w = 0;
  for (const auto& l : layers) w += l.weights;
  return w;
}
void check(const std::vector<Layer>& layers) {
  if (layers.empty()) throw std::invalid_argument("no layers to plan");
  for (const auto& l : layers) {
    if (l.options.empty()) throw std::invalid_argument(l.name + ": no format to choose from");
    if (l.weights <= 0) throw std::invalid_argument(l.name + ": no weights");
  }
}
}  // namespace

double average_bits(const std::vector<Layer>& layers, const std::vector<std::size_t>& choice) {
  double b = 0;
  for (std::size_t i = 0; i < layers.size(); ++i) b += static_cast<double>(layers[i].weights) * layers[i].options[choice[i]].bits;
  return b / static_cast<double>(total_weights(layers));
}

double predicted_cost(const std::vector<Layer>& layers, const std::vector<std::size_t>& choice) {
  double c = 0;
  for (std::size_t i = 0; i < layers.size(); ++i) c += layers[i].options[choice[i]].cost;
  return c;
}

std::vector<Layer> monotone(const std::vector<Layer>& layers) {
  std::vector<Layer> out = layers;
  for (auto& l : out) {
    std::vector<std::size_t> order(l.options.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return l.options[a].bits > l.options[b].bits; });
    double floor = 0;
    for (const std::size_t i : order) {
      floor = std::max(floor, l.options[i].cost);
      l.options[i].cost = floor;
    }
  }
  return out;
}

Solution solve_dp(const std::vector<Layer>& layers, double budget_bits, int units) {
  check(layers);
  if (units < 1) throw std::invalid_argument("solve_dp: units must be positive");
  // Bits in steps of budget / units, rounded to the nearest step; the capacity has one step of
  // slack per layer for that rounding, and every end state is checked against the exact budget
  // (cheapest first). So every plan within budget x (1 - layers / units) is found exactly.
  const double unit = budget_bits * static_cast<double>(total_weights(layers)) / units;
  const double inf = std::numeric_limits<double>::infinity();
  const std::size_t U = static_cast<std::size_t>(units) + layers.size();
  auto steps_of = [&](const Layer& l, const Option& o) {
    return static_cast<std::size_t>(std::llround(static_cast<double>(l.weights) * o.bits / unit));
  };
  std::vector<double> dp(U + 1, inf), next(U + 1);
  dp[0] = 0;
  std::vector<std::vector<std::uint8_t>> pick(layers.size(), std::vector<std::uint8_t>(U + 1, 0));
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (layers[i].options.size() > 255) throw std::invalid_argument(layers[i].name + ": too many formats");
    std::fill(next.begin(), next.end(), inf);
    for (std::size_t o = 0; o < layers[i].options.size(); ++o) {
      const std::size_t w = steps_of(layers[i], layers[i].options[o]);
      for (std::size_t u = w; u <= U; ++u) {
        const double c = dp[u - w] + layers[i].options[o].cost;
        if (c < next[u]) {
          next[u] = c;
          pick[i][u] = static_cast<std::uint8_t>(o);
        }
      }
    }
    dp.swap(next);
  }
  std::vector<std::size_t> ends;
  for (std::size_t u = 0; u <= U; ++u) {
    if (std::isfinite(dp[u])) ends.push_back(u);
  }
  std::stable_sort(ends.begin(), ends.end(), [&](std::size_t a, std::size_t b) { return dp[a] < dp[b]; });
  for (const std::size_t end : ends) {
    Solution s;
    s.choice.resize(layers.size());
    std::size_t u = end;
    for (std::size_t i = layers.size(); i-- > 0;) {
      s.choice[i] = pick[i][u];
      u -= steps_of(layers[i], layers[i].options[s.choice[i]]);
    }
    s.bits = average_bits(layers, s.choice);
    if (s.bits > budget_bits + 1e-12) continue;  // over the budget once the rounding is undone
    s.cost = predicted_cost(layers, s.choice);
    return s;
  }
  throw std::invalid_argument("budget " + std::to_string(budget_bits) + " bits/weight is below the least precise plan");
}

Solution solve_greedy(const std::vector<Layer>& layers, double budget_bits) {
  check(layers);
  Solution s;
  for (const auto& l : layers) {
    s.choice.push_back(static_cast<std::size_t>(
        std::max_element(l.options.begin(), l.options.end(), [](const Option& a, const Option& b) { return a.bits < b.bits; }) -
        l.options.begin()));
  }
  const double W = static_cast<double>(total_weights(layers));
  while (average_bits(layers, s.choice) > budget_bits + 1e-12) {
    double best = std::numeric_limits<double>::infinity();
    std::size_t bi = 0, bo = 0;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const Option& now = layers[i].options[s.choice[i]];
      for (std::size_t o = 0; o < layers[i].options.size(); ++o) {
        const double saved = (now.bits - layers[i].options[o].bits) * static_cast<double>(layers[i].weights) / W;
        if (saved <= 0) continue;
        const double rate = (layers[i].options[o].cost - now.cost) / saved;
        if (rate < best) {
          best = rate;
          bi = i;
          bo = o;
        }
      }
    }
    if (!std::isfinite(best)) throw std::invalid_argument("budget " + std::to_string(budget_bits) + " bits/weight is below the least precise plan");
    s.choice[bi] = bo;
  }
  s.bits = average_bits(layers, s.choice);
  s.cost = predicted_cost(layers, s.choice);
  return s;
}

Solution solve_budget(const std::vector<Layer>& layers, double budget_bits, const std::string& solver) {
  check(layers);
  if (solver != "dp" && solver != "greedy") throw std::invalid_argument("solver '" + solver + "': dp or greedy");
  std::vector<std::size_t> top(layers.size(), 0);
  const double ref = average_bits(layers, top);
  if (budget_bits > ref + 1e-9) {
    throw std::invalid_argument("budget " + std::to_string(budget_bits) + " bits/weight is above the reference " + layers[0].options[0].format + " (" +
                                std::to_string(ref) + " bits/weight): nothing to choose");
  }
  const auto m = monotone(layers);
  return solver == "dp" ? solve_dp(m, budget_bits) : solve_greedy(m, budget_bits);
}

double parse_budget(const std::string& s, std::int64_t weights) {
  std::size_t end = 0;
  double v = 0;
  try {
    v = std::stod(s, &end);
  } catch (const std::exception&) {
    throw std::invalid_argument("--budget '" + s + "': not a number of bits per weight or of bytes (4.5, 3.2GB)");
  }
  const std::string unit = s.substr(end);
  double scale = 0;
  if (unit.empty()) scale = 0;
  else if (unit == "B") scale = 1;
  else if (unit == "KB") scale = 1e3;
  else if (unit == "MB") scale = 1e6;
  else if (unit == "GB") scale = 1e9;
  else throw std::invalid_argument("--budget '" + s + "': unit must be B, KB, MB or GB (or none: bits per weight)");
  const double bits = scale == 0 ? v : v * scale * 8.0 / static_cast<double>(weights);
  if (!std::isfinite(bits) || bits <= 0) throw std::invalid_argument("--budget '" + s + "': must be positive");
  return bits;
}

}  // namespace mfqat::plan
