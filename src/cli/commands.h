// Subcommand registration; each cmd_*.cpp adds one subcommand and stays thin.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace mfqat::cli {

// Each add_* function registers one subcommand and returns it with the action to run when it
// was chosen. Actions throw std::exception on bad input; main prints the one-line reason.
using Action = std::function<int()>;
struct Command {
  CLI::App* sub;
  Action run;
};
Command add_formats(CLI::App& app);
Command add_quantize(CLI::App& app);
Command add_compare(CLI::App& app);
Command add_convert(CLI::App& app);
Command add_dequantize(CLI::App& app);
Command add_inspect(CLI::App& app);
Command add_data(CLI::App& app);
Command add_export(CLI::App& app);
Command add_generate(CLI::App& app);
Command add_bench(CLI::App& app);
Command add_serve(CLI::App& app);
Command add_tokenize(CLI::App& app);
Command add_import(CLI::App& app);
Command add_plan(CLI::App& app);
#if MFQAT_HAVE_TRAIN
Command add_train(CLI::App& app);
Command add_eval(CLI::App& app);
Command add_demo(CLI::App& app);
#endif

}  // namespace mfqat::cli
