// Bits budgets, not formats (issue 22, docs/budget.md): from one anchor, choose one format per
// quantized linear so that the weight-averaged bits per weight (scales included: MXINT4 is 4.25)
// stay within a budget and the predicted loss is least. Costs come from a sensitivity
// measurement on calibration text (sensitivity.cpp); the choice is a multiple-choice knapsack
// (solver.cpp); a plan is a JSON file the engine derives mixed weights from (plan_file.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mfqat::runtime {
class Engine;
struct Weights;
}

namespace mfqat::plan {

// One candidate format for one linear: bits per weight (scales included) and its cost, the loss
// increase (nats per token) measured when this linear alone takes the format.
struct Option {
  std::string format;
  double bits = 0, cost = 0;
};
struct Layer {
  std::string name;  // parameter name, "blocks.0.wq.weight"
  std::int64_t weights = 0;
  std::vector<Option> options;
};

// One option index per layer, with what it costs.
struct Solution {
  std::vector<std::size_t> choice;
  double bits = 0;  // weight-averaged bits per weight
  double cost = 0;  // predicted loss increase: the sum of the chosen options' costs
};

double average_bits(const std::vector<Layer>& layers, const std::vector<std::size_t>& choice);
double predicted_cost(const std::vector<Layer>& layers, const std::vector<std::size_t>& choice);

// Measured costs are noisy (a single linear at 6 bits can score a hair *better* than at 8): the
// solvers take costs made monotone first, so that no option is predicted cheaper than a more
// precise one of the same layer, and none below zero. Otherwise a solver spends the budget on
// the noise (a 2-bit linear whose measured cost was -0.0002).
std::vector<Layer> monotone(const std::vector<Layer>& layers);

// Multiple-choice knapsack by dynamic programming on the budget discretised into `units` steps:
// the result always meets the budget exactly, and it is the least-cost plan among all plans
// within budget x (1 - layers / units) (rounding to steps can only hide plans closer to the
// budget than that). Throws std::invalid_argument when even the
// cheapest plan exceeds the budget.
Solution solve_dp(const std::vector<Layer>& layers, double budget_bits, int units = 20000);
// The greedy baseline: every layer at its most precise option, then, until the budget is met,
// the move to a less precise option with the least cost increase per bit saved.
Solution solve_greedy(const std::vector<Layer>& layers, double budget_bits);

// Sensitivity of every quantized linear of an engine at every format of `formats` (the first is
// the reference every other linear stays at; it should be the anchor's format): the loss on
// `calib` (windows of `seq` tokens, at most `windows` of them) with that one linear changed,
// minus the reference loss.
struct Sensitivity {
  std::string score = "direct";  // direct (measure) or fisher (fisher)
  std::string reference;
  double reference_loss = 0;  // nats per token, every linear at the reference format
  std::vector<Layer> layers;  // options in the order of `formats`
  std::int64_t windows = 0, seq = 0;
  double seconds = 0;
};
Sensitivity measure(runtime::Engine& e, const std::vector<std::string>& formats, const std::vector<std::uint8_t>& calib,
                    std::int64_t seq, std::int64_t windows, const std::function<void(std::size_t done, std::size_t total)>& progress = {});
// The same with any loss of the weights (nats per token on the calibration data: a tokenizer's
// ids, say); seq and windows are recorded in the result.
using LossFn = std::function<double(const std::shared_ptr<const runtime::Weights>&)>;
Sensitivity measure(runtime::Engine& e, const std::vector<std::string>& formats, const LossFn& loss, std::int64_t seq, std::int64_t windows,
                    const std::function<void(std::size_t done, std::size_t total)>& progress = {});

// `solve_dp` or `solve_greedy` ("dp", "greedy") on costs made monotone, after checking the
// budget against the candidates: below the least precise plan, or above the reference (every
// linear at the first option, where there is nothing to choose), it throws
// std::invalid_argument naming the budget.
Solution solve_budget(const std::vector<Layer>& layers, double budget_bits, const std::string& solver);

// The first-order score (ModelOpt's gradient method, in weight space): the cost of a linear at a
// format is 1/2 * T * sum_i E[g_i^2] * (w_i(format) - w_i(reference))^2, where E[g_i^2] is the
// mean over calibration windows of the squared gradient of a window's mean loss over its T tokens
// (`mean_sq`, train::squared_gradients) and w the weights each format derives. T * E[g^2] is the
// per-token Fisher diagonal if the tokens' gradients were independent; the solver needs only the
// costs' ranking, their scale is checked against the direct measure in docs/budget.md.
Sensitivity fisher(runtime::Engine& e, const std::vector<std::string>& formats, const std::map<std::string, std::vector<float>>& mean_sq,
                   std::int64_t seq, std::int64_t windows, double reference_loss);

// A budget as given on the command line: bits per weight ("4.5") or bytes of the quantized
// linears' weights ("3.2GB", "800MB", "12KB"; decimal units) over `weights` weights.
double parse_budget(const std::string& s, std::int64_t weights);

// Files. A sensitivity file caches a measurement (plan --sensitivity); a plan file maps every
// linear to its format. Both are JSON; readers throw std::runtime_error naming the file.
void write_sensitivity(const std::string& path, const Sensitivity& s);
Sensitivity read_sensitivity(const std::string& path);
struct PlanFile {
  std::string reference, solver;
  double budget_bits = 0, bits = 0, predicted = 0;
  std::map<std::string, std::string> formats;  // parameter name -> format
  std::map<std::string, std::int64_t> weights;  // parameter name -> weight count (absent in hand-written plans)
};
PlanFile make_plan(const Sensitivity& s, const Solution& sol, double budget, const std::string& solver);
void write_plan(const std::string& path, const PlanFile& p);
PlanFile read_plan(const std::string& path);
// The same from text (`path` names it in errors: std::runtime_error), and to text.
Sensitivity parse_sensitivity(const std::string& text, const std::string& path);
PlanFile parse_plan(const std::string& text, const std::string& path);
std::string to_json(const Sensitivity& s);
std::string to_json(const PlanFile& p);

// The model's quantized linears (name, weight count) as runtime::Engine::linears() lists them.
// A file made for another model (a linear the model lacks, another weight count, or, for a
// sensitivity, not every linear) is refused: std::invalid_argument naming the file and linear.
using Linears = std::vector<std::pair<std::string, std::int64_t>>;
void check_model(const Sensitivity& s, const Linears& model, const std::string& path);
void check_model(const PlanFile& p, const Linears& model, const std::string& path);

}  // namespace mfqat::plan
