// Bits budgets as command-line flags, shared by eval, bench, generate and serve (issue 22,
// docs/budget.md): --plan FILE (a plan of `mfqat plan`) and --budget B with --sensitivity FILE
// (planned now from a cached sensitivity measurement). Each becomes a named plan on the engine
// ("plan:<file stem>", "budget:<B as given>") that every format-taking path then accepts.
#pragma once

#include <CLI/CLI.hpp>
#include <map>
#include <string>
#include <vector>

#include "mfqat/runtime/engine.h"

namespace mfqat::cli {

struct PlanFlags {
  std::vector<std::string> plans;
  std::string budgets, sensitivity, solver = "dp";
};

// Adds --plan, --budget, --sensitivity and --plan-solver to `sub`. `many`: --plan repeatable and
// --budget a comma-separated list (bench, serve, eval); otherwise one of them (generate).
void add_plan_flags(CLI::App* sub, PlanFlags& f, bool many);

struct LoadedPlan {
  std::string name;  // as the engine knows it now
  double bits = 0;   // weight-averaged bits per weight
  std::string mix;   // "mxint8 x9, mxint4 x20"
  std::map<std::string, std::string> formats;  // parameter -> format
  std::string rest;  // the format of the linears the plan does not name
};

// How many linears take each format: "mxint4 x20, mxint8 x9".
std::string mix_of(const std::map<std::string, std::string>& formats);

// Reads the plan files and solves the budgets, checks each against the engine's model (a file
// made for another model, a format its anchor cannot derive, a budget outside the candidates:
// std::invalid_argument naming it) and adds each to the engine. Returns them in flag order.
std::vector<LoadedPlan> load_plans(runtime::Engine& e, const PlanFlags& f);

}  // namespace mfqat::cli
