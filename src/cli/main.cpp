// mfqat: multi-format QAT and elastic MX inference toolkit.
#include <fmt/core.h>

#include <exception>
#include <vector>

#include "commands.h"
#include "launch.h"
#include "mfqat/mx/parallel.h"

int main(int argc, char** argv) {
  mfqat::cli::set_process_args(argc, argv);
  CLI::App app{"mfqat: multi-format quantization-aware training and elastic MX inference"};
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("--threads", threads, "worker threads (default: MFQAT_NUM_THREADS or all cores)")
      ->check(CLI::NonNegativeNumber);

  const std::vector<mfqat::cli::Command> cmds = {
      mfqat::cli::add_formats(app),
      mfqat::cli::add_quantize(app),
      mfqat::cli::add_compare(app),
      mfqat::cli::add_convert(app),
      mfqat::cli::add_dequantize(app),
      mfqat::cli::add_inspect(app),
      mfqat::cli::add_data(app),
      mfqat::cli::add_export(app),
      mfqat::cli::add_generate(app),
      mfqat::cli::add_bench(app),
      mfqat::cli::add_serve(app),
      mfqat::cli::add_tokenize(app),
      mfqat::cli::add_import(app),
      mfqat::cli::add_plan(app),
#if MFQAT_HAVE_TRAIN
      mfqat::cli::add_train(app),
      mfqat::cli::add_eval(app),
      mfqat::cli::add_demo(app),
#endif
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (threads > 0) mfqat::set_num_threads(threads);
  try {
    for (const auto& c : cmds) {
      if (c.sub->parsed()) return c.run();
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "mfqat: error: {}\n", e.what());
    return 1;
  }
  return 1;
}
