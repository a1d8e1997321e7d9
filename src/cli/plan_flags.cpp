#include "plan_flags.h"

#include <filesystem>
#include <map>
#include <stdexcept>

#include "mfqat/plan/plan.h"
#include "util.h"

namespace mfqat::cli {

void add_plan_flags(CLI::App* sub, PlanFlags& f, bool many) {
  if (many) {
    sub->add_option("--plan", f.plans, "a mixed-precision plan of `mfqat plan`, served as format \"plan:<file stem>\" (repeatable)");
    sub->add_option("--budget", f.budgets,
                    "bits budgets (5.5, or bytes: 3.2GB), comma-separated, each planned now from --sensitivity and served as \"budget:<B>\"");
  } else {
    f.plans.resize(1);
    sub->add_option("--plan", f.plans[0], "a mixed-precision plan of `mfqat plan` instead of one format");
    sub->add_option("--budget", f.budgets, "a bits budget (5.5, or bytes: 3.2GB) planned now from --sensitivity, instead of one format");
  }
  sub->add_option("--sensitivity", f.sensitivity, "--budget: the sensitivity file `mfqat plan --sensitivity` wrote for this model");
  sub->add_option("--plan-solver", f.solver, "--budget: dp (exact, default) or greedy")->check(CLI::IsMember({"dp", "greedy"}));
}

std::string mix_of(const std::map<std::string, std::string>& formats) {
  std::map<std::string, int> count;
  for (const auto& [k, v] : formats) ++count[v];
  std::string mix;
  for (const auto& [k, v] : count) mix += (mix.empty() ? "" : ", ") + k + " x" + std::to_string(v);
  return mix;
}

std::vector<LoadedPlan> load_plans(runtime::Engine& e, const PlanFlags& f) {
  std::vector<LoadedPlan> out;
  const auto linears = e.linears();
  for (const auto& path : f.plans) {
    if (path.empty()) continue;
    const plan::PlanFile p = plan::read_plan(path);
    plan::check_model(p, linears, path);
    LoadedPlan l{"plan:" + std::filesystem::path(path).stem().string(), 0, mix_of(p.formats), p.formats, p.reference};
    try {
      l.bits = e.add_plan(l.name, p.formats, p.reference);
    } catch (const std::invalid_argument& ex) {
      throw std::invalid_argument(path + ": " + ex.what());
    }
    out.push_back(std::move(l));
  }
  const auto budgets = split_list(f.budgets);
  if (budgets.empty()) return out;
  if (f.sensitivity.empty()) throw std::invalid_argument("--budget needs --sensitivity FILE (written by `mfqat plan --sensitivity FILE`)");
  plan::Sensitivity s = plan::read_sensitivity(f.sensitivity);
  plan::check_model(s, linears, f.sensitivity);
  std::int64_t weights = 0;
  for (const auto& l : linears) weights += l.second;
  for (const auto& b : budgets) {
    const plan::Solution sol = plan::solve_budget(s.layers, plan::parse_budget(b, weights), f.solver);
    const plan::PlanFile p = plan::make_plan(s, sol, sol.bits, f.solver);
    LoadedPlan l{"budget:" + b, 0, mix_of(p.formats), p.formats, s.reference};
    try {
      l.bits = e.add_plan(l.name, p.formats, s.reference);
    } catch (const std::invalid_argument& ex) {
      throw std::invalid_argument(f.sensitivity + ": " + ex.what());
    }
    out.push_back(std::move(l));
  }
  return out;
}

}  // namespace mfqat::cli
