// Sensitivity and plan files (JSON), written atomically, read with one-line errors.
#include <cmath>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "mfqat/ckpt/file.h"
#include "mfqat/plan/plan.h"

namespace mfqat::plan {

namespace {
using nlohmann::json;

void put(const std::string& path, const std::string& text) { ckpt::write_file_atomic(path, text.data(), text.size()); }
std::string text_of(const std::string& path) {
  const auto b = ckpt::read_file(path);
  return std::string(b.begin(), b.end());
}
json get(const std::string& text, const std::string& path) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw std::runtime_error(path + ": not a JSON object");
  return j;
}
// Counts past 2^48 weights (or options past 255) are no model's: refused before any sum overflows.
constexpr std::int64_t kMaxWeights = std::int64_t{1} << 48;
template <class F>
auto field(const std::string& path, F f) {
  try {
    return f();
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}
}  // namespace

std::string to_json(const Sensitivity& s) {
  json layers = json::array();
  for (const auto& l : s.layers) {
    json o = json::array();
    for (const auto& op : l.options) o.push_back({{"format", op.format}, {"bits", op.bits}, {"cost", op.cost}});
    layers.push_back({{"name", l.name}, {"weights", l.weights}, {"options", o}});
  }
  return json{{"mfqat", "sensitivity"},
             {"score", s.score},
             {"reference", s.reference},
             {"reference_loss", s.reference_loss},
             {"windows", s.windows},
             {"seq", s.seq},
             {"seconds", s.seconds},
             {"layers", layers}}
             .dump(1) + "\n";
}

void write_sensitivity(const std::string& path, const Sensitivity& s) { put(path, to_json(s)); }
Sensitivity read_sensitivity(const std::string& path) { return parse_sensitivity(text_of(path), path); }

Sensitivity parse_sensitivity(const std::string& text, const std::string& path) {
  const json j = get(text, path);
  return field(path, [&] {
    if (j.at("mfqat").get<std::string>() != "sensitivity") throw std::runtime_error(path + ": not an mfqat sensitivity file");
    Sensitivity s;
    s.score = j.value("score", std::string("direct"));
    if (s.score != "direct" && s.score != "fisher") throw std::runtime_error(path + ": unknown score '" + s.score + "'");
    s.reference = j.at("reference").get<std::string>();
    s.reference_loss = j.at("reference_loss").get<double>();
    s.windows = j.at("windows").get<std::int64_t>();
    s.seq = j.at("seq").get<std::int64_t>();
    s.seconds = j.at("seconds").get<double>();
    for (const auto& l : j.at("layers")) {
      Layer L;
      L.name = l.at("name").get<std::string>();
      L.weights = l.at("weights").get<std::int64_t>();
      for (const auto& o : l.at("options")) {
        Option op{o.at("format").get<std::string>(), o.at("bits").get<double>(), o.at("cost").get<double>()};
        if (!std::isfinite(op.bits) || op.bits <= 0 || !std::isfinite(op.cost)) throw std::runtime_error(path + ": " + L.name + ": bad option");
        L.options.push_back(op);
      }
      if (L.options.empty() || L.options.size() > 255 || L.weights <= 0 || L.weights > kMaxWeights)
        throw std::runtime_error(path + ": " + L.name + ": no options, more than 255, or a weight count out of range");
      s.layers.push_back(std::move(L));
    }
    if (s.layers.empty() || s.layers.size() > 1000000) throw std::runtime_error(path + ": no layers, or too many");
    return s;
  });
}

PlanFile make_plan(const Sensitivity& s, const Solution& sol, double budget, const std::string& solver) {
  PlanFile p;
  p.reference = s.reference;
  p.solver = solver;
  p.budget_bits = budget;
  p.bits = sol.bits;
  p.predicted = sol.cost;
  for (std::size_t i = 0; i < s.layers.size(); ++i) {
    p.formats[s.layers[i].name] = s.layers[i].options[sol.choice[i]].format;
    p.weights[s.layers[i].name] = s.layers[i].weights;
  }
  return p;
}

std::string to_json(const PlanFile& p) {
  return json{{"mfqat", "plan"},
             {"reference", p.reference},
             {"solver", p.solver},
             {"budget_bits", p.budget_bits},
             {"bits_per_weight", p.bits},
             {"predicted_loss_increase", p.predicted},
             {"formats", p.formats},
             {"weights", p.weights}}
             .dump(1) + "\n";
}

void write_plan(const std::string& path, const PlanFile& p) { put(path, to_json(p)); }
PlanFile read_plan(const std::string& path) { return parse_plan(text_of(path), path); }

PlanFile parse_plan(const std::string& text, const std::string& path) {
  const json j = get(text, path);
  return field(path, [&] {
    if (j.at("mfqat").get<std::string>() != "plan") throw std::runtime_error(path + ": not an mfqat plan file");
    PlanFile p;
    p.reference = j.at("reference").get<std::string>();
    p.solver = j.value("solver", "");
    p.budget_bits = j.value("budget_bits", 0.0);
    p.bits = j.value("bits_per_weight", 0.0);
    p.predicted = j.value("predicted_loss_increase", 0.0);
    p.formats = j.at("formats").get<std::map<std::string, std::string>>();
    if (p.formats.empty()) throw std::runtime_error(path + ": no formats");
    if (j.contains("weights")) p.weights = j.at("weights").get<std::map<std::string, std::int64_t>>();
    for (const auto& [name, n] : p.weights) {
      if (n <= 0 || n > kMaxWeights || !p.formats.count(name)) throw std::runtime_error(path + ": weights of '" + name + "': not a linear of the plan with a positive count");
    }
    return p;
  });
}

namespace {
std::int64_t count_of(const Linears& model, const std::string& name, const std::string& path) {
  for (const auto& [n, c] : model) {
    if (n == name) return c;
  }
  throw std::invalid_argument(path + ": no linear '" + name + "' in this model (made for another model)");
}
void check_count(const Linears& model, const std::string& name, std::int64_t n, const std::string& path) {
  const std::int64_t want = count_of(model, name, path);
  if (n != want) {
    throw std::invalid_argument(path + ": " + name + " has " + std::to_string(n) + " weights, the model's " + std::to_string(want) +
                                " (made for another model)");
  }
}
}  // namespace

void check_model(const Sensitivity& s, const Linears& model, const std::string& path) {
  for (const auto& l : s.layers) check_count(model, l.name, l.weights, path);
  if (s.layers.size() != model.size()) {
    throw std::invalid_argument(path + ": " + std::to_string(s.layers.size()) + " linears, the model has " + std::to_string(model.size()) +
                                " (made for another model)");
  }
}

void check_model(const PlanFile& p, const Linears& model, const std::string& path) {
  for (const auto& [name, f] : p.formats) (void)count_of(model, name, path);
  for (const auto& [name, n] : p.weights) check_count(model, name, n, path);
}

}  // namespace mfqat::plan
