// Decode tokens/s of the synthetic large model under several settings of the engine's kernel
// options, measured in one process in interleaved rounds (A B C A B C ...), so that an A/B holds
// on a machine whose speed drifts by 1.5x within minutes (docs/perf.md). Prints per variant the
// median, min and max tok/s and the median of its per-round ratio to the first variant.
//
//   decode_ab [--format F] [--anchor A] [--rounds N] [--tokens N] VARIANT...
//   VARIANT: comma-separated switches, "default" for none: digits=2|3, fixed=0|1, avx512=0|1,
//            vbmi=0|1, threads=N, shared=0|1 (Engine::set_shared_decode)
//   e.g. decode_ab --format mxfp4_e2m1 --anchor mxfp8_e4m3 digits=3 digits=2
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/engine.h"

using namespace mfqat;

namespace {

void set_variant(runtime::Engine* e, const std::string& variant, int default_threads) {
  runtime::KernelOptions k;  // the engine's defaults
  set_num_threads(default_threads);
  if (e) e->set_shared_decode(true);
  if (variant != "default") {
    std::stringstream ss(variant);
    for (std::string kv; std::getline(ss, kv, ',');) {
      const auto eq = kv.find('=');
      if (eq == std::string::npos) throw std::invalid_argument("variant '" + kv + "': want NAME=VALUE");
      const std::string name = kv.substr(0, eq);
      const int v = std::stoi(kv.substr(eq + 1));
      if (name == "digits") {
        k.fx_digits = v;
      } else if (name == "fixed") {
        k.fixed_point = v != 0;
      } else if (name == "avx512") {
        k.avx512 = v != 0;
      } else if (name == "vbmi") {
        k.vbmi = v != 0;
      } else if (name == "threads") {
        set_num_threads(v);
      } else if (name == "shared") {
        if (e) e->set_shared_decode(v != 0);
      } else {
        throw std::invalid_argument("unknown switch '" + name + "' (digits, fixed, avx512, vbmi, threads, shared)");
      }
    }
  }
  k.validate();
  if (e) e->set_kernels(k);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string format = "mxfp4_e2m1", anchor = "mxfp8_e4m3";
    int rounds = 8, tokens = 64;
    std::vector<std::string> variants;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
        return argv[++i];
      };
      if (a == "--format") {
        format = next();
      } else if (a == "--anchor") {
        anchor = next();
      } else if (a == "--rounds") {
        rounds = std::stoi(next());
      } else if (a == "--tokens") {
        tokens = std::stoi(next());
      } else {
        variants.push_back(a);
      }
    }
    if (variants.empty()) variants = {"default"};
    if (rounds < 1 || tokens < 1) throw std::invalid_argument("--rounds and --tokens must be positive");
    const int threads = num_threads();
    for (const auto& v : variants) set_variant(nullptr, v, threads);  // refuse a bad variant before the long build
    model::LmConfig c;  // the bench's "large": 2048 wide, 16 layers
    c.dim = 2048;
    c.n_layers = 16;
    c.n_heads = 16;
    c.max_seq = 512;
    auto e = runtime::Engine::synthetic(c, mx::find_format(anchor));
    const auto w = e->weights(format);
    std::vector<std::vector<double>> tps(variants.size());
    for (int r = 0; r < rounds; ++r) {
      for (std::size_t v = 0; v < variants.size(); ++v) {
        set_variant(e.get(), variants[v], threads);
        runtime::Session s(*e, w);
        s.feed_all(std::vector<int>(16, 'a'));  // a 16-token prompt, as mfqat bench
        const auto t0 = std::chrono::steady_clock::now();
        for (int t = 0; t < tokens; ++t) s.feed({'a' + t % 26});
        tps[v].push_back(tokens / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
    }
    std::printf("%s from %s, %d tokens after a 16-token prompt, %d interleaved rounds\n", format.c_str(), anchor.c_str(), tokens, rounds);
    std::printf("%-28s %8s %8s %8s %14s\n", "variant", "median", "min", "max", "ratio to 1st");
    for (std::size_t v = 0; v < variants.size(); ++v) {
      std::vector<double> ratio(static_cast<std::size_t>(rounds));
      for (std::size_t r = 0; r < ratio.size(); ++r) ratio[r] = tps[v][r] / tps[0][r];
      const auto [mn, mxv] = std::minmax_element(tps[v].begin(), tps[v].end());
      std::printf("%-28s %8.1f %8.1f %8.1f %14.3f\n", variants[v].c_str(), median(tps[v]), *mn, *mxv, median(ratio));
    }
    return 0;
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "decode_ab: %s\n", ex.what());
    return 1;
  }
}
