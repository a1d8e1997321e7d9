// Training step time per strategy, all in one run and interleaved (round robin) so that this
// VM's drifting speed hits every configuration alike: fp32, single-format QAT (weights only) at
// several formats, and multi-format joint / cycle / random. Also times the fake-quant of all
// quantized weights alone, which is what weights-only QAT adds to a step.
//
//   train_bench [--rounds R] [--steps K] [--config FILE] [--seq T] [--batch B] [--json FILE]
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "mfqat/train/trainer.h"

using namespace mfqat;
using namespace mfqat::train;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 5, steps = 3;
  std::int64_t seq = 128, batch = 16;
  std::string config, json_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--rounds") rounds = std::stoi(v);
    else if (a == "--steps") steps = std::stoi(v);
    else if (a == "--seq") seq = std::stoll(v);
    else if (a == "--batch") batch = std::stoll(v);
    else if (a == "--config") config = v;
    else if (a == "--json") json_path = v;
    else { fmt::print(stderr, "unknown option {}\n", a); return 2; }
  }
  const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  ModelConfig cfg;
  if (!config.empty()) {
    std::ifstream f(config);
    cfg = ModelConfig::from_json(std::string(std::istreambuf_iterator<char>(f), {}), config);
  }
  // Random bytes: step time does not depend on the text.
  std::vector<std::uint8_t> text(1 << 20);
  std::mt19937 rng(0);
  for (auto& b : text) b = static_cast<std::uint8_t>(rng() % 96 + 32);
  auto task = lm_task(text, {}, seq, 1);
  torch::manual_seed(0);
  const auto model = make_model(cfg);
  torch::optim::AdamW adam(model->parameters(), torch::optim::AdamWOptions(1e-4));

  const auto F = [](const char* n) { return std::optional<mx::Format>(mx::find_format(n)); };
  struct Config {
    std::string name;
    std::vector<std::vector<std::optional<mx::Format>>> schedule;  // formats of step i % size
  };
  const std::vector<std::optional<mx::Format>> ints = {F("mxint2"), F("mxint4"), F("mxint6"), F("mxint8")};
  std::vector<Config> configs = {
      {"fp32", {{std::nullopt}}},
      {"sf mxint4", {{F("mxint4")}}},
      {"sf mxint8", {{F("mxint8")}}},
      {"sf mxfp4_e2m1", {{F("mxfp4_e2m1")}}},
      {"sf mxfp8_e4m3", {{F("mxfp8_e4m3")}}},
      {"mf joint {2,4,6,8}", {ints}},
      {"mf cycle {2,4,6,8}", {{ints[0]}, {ints[1]}, {ints[2]}, {ints[3]}}},
      {"mf random {2,4,6,8}", {}},  // filled per step from the RNG
  };
  std::uniform_int_distribution<std::size_t> pick(0, static_cast<std::size_t>(task->items() - 1));
  std::uniform_int_distribution<std::size_t> pick_fmt(0, ints.size() - 1);
  std::vector<std::vector<double>> per_step(configs.size());
  std::vector<double> fq_times;
  const auto ql = model->quant_linears();
  std::int64_t qweights = 0;
  for (const auto& [n, l] : ql) qweights += l->weight.numel();
  fmt::print(stderr, "model {} ({} parameters, {} quantized), seq {} batch {}, {} threads, {} rounds x {} steps\n", cfg.to_json(),
             cfg.param_count(), qweights, seq, batch, threads, rounds, steps);
  int step_no = 0;
  for (int r = 0; r < rounds + 1; ++r) {  // round 0 warms up and is not counted
    for (std::size_t c = 0; c < configs.size(); ++c) {
      const double t0 = now();
      for (int s = 0; s < steps; ++s, ++step_no) {
        std::vector<std::int64_t> items;
        for (std::int64_t b = 0; b < batch; ++b) items.push_back(static_cast<std::int64_t>(pick(rng)));
        const auto& sch = configs[c].schedule;
        const auto run = sch.empty() ? std::vector<std::optional<mx::Format>>{ints[pick_fmt(rng)]} : sch[static_cast<std::size_t>(step_no) % sch.size()];
        train_step(*model, *task, items, run, adam, 1.0);
      }
      if (r > 0) per_step[c].push_back((now() - t0) / steps);
    }
    // The fake-quant forward of every quantized weight (what a QAT step adds, once per format).
    const double t0 = now();
    {
      torch::NoGradGuard ng;
      for (const auto& [n, l] : ql) mx_fake_quant(l->weight, *F("mxint4"));
    }
    if (r > 0) fq_times.push_back(now() - t0);
  }
  const double base = median(per_step[0]);
  nlohmann::json out = {{"config", nlohmann::json::parse(cfg.to_json())}, {"seq", seq}, {"batch", batch}, {"threads", threads},
                        {"rounds", rounds}, {"steps_per_round", steps}, {"fake_quant_all_weights_ms", 1e3 * median(fq_times)}};
  fmt::print("{:<22} {:>12} {:>12} {:>10}\n", "strategy", "step (ms)", "tokens/s", "vs fp32");
  for (std::size_t c = 0; c < configs.size(); ++c) {
    const double t = median(per_step[c]);
    const double tps = static_cast<double>(batch * seq) / t;
    std::vector<double> ms_rounds;
    for (double v : per_step[c]) ms_rounds.push_back(1e3 * v);
    fmt::print("{:<22} {:>12.1f} {:>12.0f} {:>+9.1f}%\n", configs[c].name, 1e3 * t, tps, 100 * (t / base - 1));
    out["strategies"].push_back({{"name", configs[c].name}, {"step_ms", 1e3 * t}, {"tokens_per_s", tps}, {"overhead_vs_fp32", t / base - 1},
                                 {"step_ms_all_rounds", ms_rounds}});
  }
  fmt::print("fake-quant of all {} quantized weights (mxint4, forward only): {:.2f} ms\n", qweights, 1e3 * median(fq_times));
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  return 0;
}
