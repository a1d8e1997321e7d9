// What the plan fuzz target does with one input (see harness.h for the contract), shared with
// tests/test_fuzz_regressions.cpp. Its own header: only targets that link mfqat_plan include it.
#pragma once

#include <stdexcept>
#include <string>

#include "invariant.h"
#include "mfqat/plan/plan.h"

namespace mfqat::fuzz {

// Plan and sensitivity files (src/plan): accepted when either reader accepts it. An accepted
// file round-trips through its writer; on an accepted sensitivity both solvers run at a few
// budgets and any plan they return is within its budget; the model checks run against a fixed
// model. Throws std::runtime_error (the readers') when both refuse it.
inline void plan_file(const std::string& text, const std::string& name) {
  const plan::Linears model = {{"blocks.0.wq.weight", 1024}, {"blocks.0.w1.weight", 2816}, {"head.weight", 65536}};
  bool accepted = false;
  std::string why;
  try {
    const plan::PlanFile p = plan::parse_plan(text, name);
    require(!p.formats.empty(), "a plan names a linear");
    const std::string t = plan::to_json(p);
    require(plan::to_json(plan::parse_plan(t, "round-trip")) == t, "plan round trip");
    try {
      plan::check_model(p, model, name);
    } catch (const std::invalid_argument&) {
    }
    accepted = true;
  } catch (const std::runtime_error& e) {
    why = e.what();
  }
  try {
    const plan::Sensitivity s = plan::parse_sensitivity(text, name);
    const std::string t = plan::to_json(s);
    require(plan::to_json(plan::parse_sensitivity(t, "round-trip")) == t, "sensitivity round trip");
    try {
      plan::check_model(s, model, name);
    } catch (const std::invalid_argument&) {
    }
    if (s.layers.size() <= 64) {  // the DP is layers x 20,000 steps: keep each input fast
      for (const double b : {2.5, 4.5, 6.0, 8.25}) {
        for (const char* solver : {"dp", "greedy"}) {
          try {
            const plan::Solution sol = plan::solve_budget(s.layers, b, solver);
            require(sol.choice.size() == s.layers.size(), "a choice per layer");
            require(sol.bits <= b * (1 + 1e-12), "the plan is within its budget");
          } catch (const std::invalid_argument&) {
          }
        }
      }
    }
    accepted = true;
  } catch (const std::runtime_error& e) {
    if (why.empty()) why = e.what();
  }
  if (!accepted) throw std::runtime_error(why);
}

}  // namespace mfqat::fuzz
