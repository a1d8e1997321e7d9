#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "mfqat/data/prepare.h"
#include "util.h"

namespace mfqat::cli {

Command add_data(CLI::App& app) {
  auto* sub = app.add_subcommand("data", "Data sets: prepare the bundled Austen novels and Fashion-MNIST");
  sub->require_subcommand(1);
  auto* prep = sub->add_subcommand("prepare", "Fetch (apt-get download), decode and split the data sets into a data dir");
  auto o = std::make_shared<data::PrepareOptions>();
  auto only = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  prep->add_option("--data-dir", o->data_dir, "where to put the data (default: data)");
  prep->add_flag("--force", o->force, "redo even when the data are already there");
  prep->add_option("--only", *only, "austen or fashion (default: both)")->check(CLI::IsMember({"austen", "fashion"}));
  prep->add_flag("--json", *json, "print the manifest of prepared files as JSON");
  return {sub, [o, only, json]() {
    if (!only->empty()) {
      o->austen = *only == "austen";
      o->fashion = *only == "fashion";
    }
    const auto r = data::prepare(*o, [&](const std::string& m) {
      if (!*json) fmt::print(stderr, "data: {}\n", m);
    });
    if (*json) {
      nlohmann::json j = {{"cached", r.cached}, {"files", nlohmann::json::array()}};
      for (const auto& f : r.files) j["files"].push_back({{"path", f.path}, {"bytes", f.bytes}});
      fmt::print("{}\n", j.dump(2));
      return 0;
    }
    if (r.cached) fmt::print("data in {} already prepared (use --force to redo)\n", o->data_dir);
    for (const auto& [n, l] : r.novels) fmt::print("  {:<18} {:>6} lines{}\n", n, l, n == data::kTestNovel ? "  (test)" : "");
    for (const auto& f : r.files) fmt::print("  {:<48} {:>12}\n", f.path, human_bytes(static_cast<double>(f.bytes)));
    return 0;
  }};
}

}  // namespace mfqat::cli
