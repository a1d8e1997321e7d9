#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "mfqat/mx/format.h"

namespace mfqat::cli {

Command add_formats(CLI::App& app) {
  auto* sub = app.add_subcommand("formats", "List the MX formats in the registry");
  struct Opts {
    bool json = false;
    int block_size = mx::kDefaultBlockSize;
    std::vector<std::string> extra;
  };
  auto o = std::make_shared<Opts>();
  sub->add_flag("--json", o->json, "machine-readable output");
  sub->add_option("--block-size", o->block_size, "elements per shared scale")->check(CLI::Range(1, mx::kMaxBlockSize));
  sub->add_option("--also", o->extra, "extra (generic) formats to show, e.g. mxfp5_e2m2");
  return {sub, [o]() {
    std::vector<mx::Format> rows;
    for (const auto& f : mx::registry()) rows.push_back(f.with_block_size(o->block_size));
    for (const auto& n : o->extra) rows.push_back(mx::find_format(n, o->block_size));
    if (o->json) {
      nlohmann::json j = nlohmann::json::array();
      for (const auto& f : rows) {
        j.push_back({{"name", f.name},
                     {"family", f.family_name()},
                     {"bits", f.bits},
                     {"ebits", f.ebits},
                     {"mbits", f.mbits},
                     {"bias", f.bias},
                     {"emax", f.emax},
                     {"emin", f.emin},
                     {"max_normal", f.max_normal},
                     {"min_subnormal", f.min_subnormal},
                     {"max_code", f.max_code},
                     {"specials", f.specials_name()},
                     {"block_size", f.block_size},
                     {"packed_bytes_per_block", f.packed_bytes_per_block()},
                     {"bits_per_weight", f.bits_per_weight()},
                     {"builtin", f.builtin},
                     {"description", f.description}});
      }
      fmt::print("{}\n", j.dump(2));
      return 0;
    }
    fmt::print("{:<12} {:>3} {:>4} {:>5} {:>4} {:>4} {:>9} {:>12} {:>10} {:>6} {:>5}  {}\n", "format", "fam", "bits",
               "E.M", "bias", "emax", "max", "min_sub", "specials", "B/blk", "bpw", "notes");
    for (const auto& f : rows) {
      const std::string em = f.family == mx::Family::Fp ? fmt::format("{}.{}", f.ebits, f.mbits) : fmt::format("1.{}", f.mbits);
      fmt::print("{:<12} {:>3} {:>4} {:>5} {:>4} {:>4} {:>9.6g} {:>12.6g} {:>10} {:>6} {:>5.2f}  {}\n", f.name,
                 f.family_name(), f.bits, em, f.bias, f.emax, f.max_normal, f.min_subnormal, f.specials_name(),
                 f.packed_bytes_per_block() + 1, f.bits_per_weight(), f.description);
    }
    fmt::print("aliases: mxfp8 = mxfp8_e4m3, mxfp6 = mxfp6_e2m3, mxfp4 = mxfp4_e2m1; "
               "generic: mxfpB_eEmM (E+M+1 = B <= 8, E <= 5). B/blk counts the scale byte.\n");
    return 0;
  }};
}

}  // namespace mfqat::cli
