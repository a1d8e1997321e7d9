// Per-linear sensitivity on the runtime: the direct measure, one linear changed at a time.
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "mfqat/plan/plan.h"
#include "mfqat/runtime/engine.h"

namespace mfqat::plan {

Sensitivity measure(runtime::Engine& e, const std::vector<std::string>& formats, const std::vector<std::uint8_t>& calib,
                    std::int64_t seq, std::int64_t windows, const std::function<void(std::size_t, std::size_t)>& progress) {
  if (formats.empty()) throw std::invalid_argument("--formats: at least one format");
  const auto t0 = std::chrono::steady_clock::now();
  Sensitivity s;
  s.seq = seq;
  s.windows = windows;
  std::vector<std::string> names;
  std::vector<double> bits;
  for (const auto& f : formats) {
    if (f == "fp32") throw std::invalid_argument("--formats: fp32 is not an MX format");
    const mx::Format m = e.resolve(f);  // throws naming an unknown or underivable format
    names.push_back(m.name);
    bits.push_back(m.bits_per_weight());
  }
  auto loss_of = [&](const std::shared_ptr<const runtime::Weights>& w) {
    const double l = runtime::perplexity(e, w, calib, seq, windows).loss;
    if (!std::isfinite(l)) throw std::runtime_error("sensitivity: a non-finite loss at " + w->format);
    return l;
  };
  s.reference = names[0];
  s.reference_loss = loss_of(e.weights(s.reference));
  const auto lin = e.linears();
  const std::size_t total = lin.size() * (names.size() - 1);
  std::size_t done = 0;
  for (const auto& [name, n] : lin) {
    Layer L;
    L.name = name;
    L.weights = n;
    L.options.push_back({names[0], bits[0], 0.0});
    for (std::size_t f = 1; f < names.size(); ++f) {
      const double l = loss_of(e.weights_mixed({{name, names[f]}}, s.reference, name + "@" + names[f]));
      L.options.push_back({names[f], bits[f], l - s.reference_loss});
      if (progress) progress(++done, total);
    }
    s.layers.push_back(std::move(L));
  }
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

}  // namespace mfqat::plan
