// Per-linear sensitivity on the runtime: the direct measure, one linear changed at a time.
#include <algorithm>
#include <chrono>
#include <map>
#include <cmath>
#include <stdexcept>

#include "mfqat/plan/plan.h"
#include "mfqat/runtime/engine.h"

namespace mfqat::plan {

Sensitivity measure(runtime::Engine& e, const std::vector<std::string>& formats, const std::vector<std::uint8_t>& calib,
                    std::int64_t seq, std::int64_t windows, const std::function<void(std::size_t, std::size_t)>& progress) {
  const LossFn loss = [&](const std::shared_ptr<const runtime::Weights>& w) { return runtime::perplexity(e, w, calib, seq, windows).loss; };
  return measure(e, formats, loss, seq, windows, progress);
}

Sensitivity measure(runtime::Engine& e, const std::vector<std::string>& formats, const LossFn& loss, std::int64_t seq, std::int64_t windows,
                    const std::function<void(std::size_t, std::size_t)>& progress) {
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
    const double l = loss(w);
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

namespace {
// The fp32 values of one linear of `w` ("blocks.3.w1.weight", "head.weight").
std::vector<float> dequantized(const runtime::Weights& w, const std::string& name) {
  const runtime::Linear* L = nullptr;
  if (name == "head.weight") {
    L = &w.head;
  } else {
    const std::size_t dot = name.find('.', 7);
    const std::size_t layer = std::stoul(name.substr(7, dot - 7));
    const std::string which = name.substr(dot + 1, name.size() - dot - 1 - 7);  // "w1" of ".w1.weight"
    const runtime::LayerWeights& lw = w.layers.at(layer);
    const std::map<std::string, const runtime::Linear*> by = {{"wq", &lw.wq}, {"wk", &lw.wk}, {"wv", &lw.wv}, {"wo", &lw.wo},
                                                              {"w1", &lw.w1}, {"w2", &lw.w2}, {"w3", &lw.w3}};
    L = by.at(which);
  }
  std::vector<float> v(static_cast<std::size_t>(L->rows * L->cols));
  if (L->is_mx) {
    mx::dequantize(*L->mx.format, L->mx.elements, L->mx.scales, L->rows, L->cols, v.data());
  } else {
    std::copy(L->f32, L->f32 + v.size(), v.begin());
  }
  return v;
}
}  // namespace

Sensitivity fisher(runtime::Engine& e, const std::vector<std::string>& formats, const std::map<std::string, std::vector<float>>& mean_sq,
                   std::int64_t seq, std::int64_t windows, double reference_loss) {
  if (formats.size() < 2) throw std::invalid_argument("--formats: at least two formats (the reference first)");
  const auto t0 = std::chrono::steady_clock::now();
  Sensitivity s;
  s.score = "fisher";
  s.seq = seq;
  s.windows = windows;
  s.reference_loss = reference_loss;
  std::vector<mx::Format> fs;
  for (const auto& f : formats) {
    if (f == "fp32") throw std::invalid_argument("--formats: fp32 is not an MX format");
    fs.push_back(e.resolve(f));
  }
  s.reference = fs[0].name;
  for (const auto& [name, n] : e.linears()) {
    const auto g = mean_sq.find(name);
    if (g == mean_sq.end() || static_cast<std::int64_t>(g->second.size()) != n) throw std::invalid_argument("fisher: no gradients for " + name);
    Layer L;
    L.name = name;
    L.weights = n;
    std::vector<float> ref;
    for (std::size_t f = 0; f < fs.size(); ++f) {
      const std::vector<float> w = dequantized(*e.weights(fs[f].name), name);
      if (f == 0) ref = w;
      double sum = 0;
      for (std::size_t i = 0; i < w.size(); ++i) {
        const double d = static_cast<double>(w[i]) - static_cast<double>(ref[i]);
        sum += static_cast<double>(g->second[i]) * d * d;
      }
      L.options.push_back({fs[f].name, fs[f].bits_per_weight(), 0.5 * static_cast<double>(seq) * sum});
    }
    s.layers.push_back(std::move(L));
  }
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

}  // namespace mfqat::plan
