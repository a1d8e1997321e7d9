#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <vector>

#include "mfqat/ckpt/file.h"
#include "mfqat/data/idx.h"
#include "mfqat/data/prepare.h"
#include "mfqat/data/rdata.h"
#include "../fuzz/harness_data.h"

using namespace mfqat;
using namespace mfqat::data;
namespace fs = std::filesystem;

namespace {

// A tiny writer of R's XDR serialization, enough for the tests.
struct RWriter {
  std::vector<std::uint8_t> b;
  explicit RWriter(int version = 3) {
    b = {'X', '\n'};
    i32(version);
    i32(0x040201);
    i32(0x030500);
    if (version == 3) {
      i32(5);
      for (char c : std::string("UTF-8")) b.push_back(static_cast<std::uint8_t>(c));
    }
  }
  void i32(std::int32_t v) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(static_cast<std::uint32_t>(v) >> s));
  }
  void charsxp(const std::string& s) {
    i32(0x00040009);
    i32(static_cast<std::int32_t>(s.size()));
    for (char c : s) b.push_back(static_cast<std::uint8_t>(c));
  }
  void strsxp(const std::vector<std::string>& v, bool with_na = false) {
    i32(16);
    i32(static_cast<std::int32_t>(v.size() + with_na));
    for (const auto& s : v) charsxp(s);
    if (with_na) {
      i32(9);
      i32(-1);
    }
  }
  // names attribute pairlist: first use writes the symbol, later ones refer to it (REFSXP 1)
  void names_attr(const std::vector<std::string>& names, bool first) {
    i32(0x00000402);  // LISTSXP with tag
    if (first) {
      i32(1);
      charsxp("names");
    } else {
      i32(0x000001ff);
    }
    strsxp(names);
    i32(254);
  }
};

std::vector<std::uint8_t> zlib_compress(const std::vector<std::uint8_t>& in) {
  uLongf n = compressBound(static_cast<uLong>(in.size()));
  std::vector<std::uint8_t> out(n);
  compress(out.data(), &n, in.data(), static_cast<uLong>(in.size()));
  out.resize(n);
  return out;
}

std::vector<std::uint8_t> gzip(const std::vector<std::uint8_t>& in) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::vector<std::uint8_t> out(deflateBound(&zs, static_cast<uLong>(in.size())) + 32);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

fs::path tmpdir(const std::string& tag) {
  fs::path d = fs::temp_directory_path() / ("mfqat_data_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

}  // namespace

TEST(RData, StringVectorWithNA) {
  for (int version : {2, 3}) {
    RWriter w(version);
    w.strsxp({"It is a truth", "", "universally acknowledged"}, true);
    const RObject o = unserialize(w.b, "t");
    ASSERT_EQ(o.type, RObject::String);
    ASSERT_EQ(o.strings.size(), 4u);
    EXPECT_EQ(*o.strings[0], "It is a truth");
    EXPECT_EQ(*o.strings[1], "");
    EXPECT_FALSE(o.strings[3].has_value());
  }
}

TEST(RData, NamedListWithReferences) {
  RWriter w;
  w.i32(0x00000213);  // VECSXP with attributes
  w.i32(2);
  w.i32(0x00000213);  // inner list, with names
  w.i32(1);
  w.i32(13);
  w.i32(2);
  w.i32(7);
  w.i32(9);
  w.names_attr({"a"}, true);
  w.strsxp({"x"});
  w.names_attr({"inner", "s"}, false);  // second "names" symbol is a REFSXP
  const RObject o = unserialize(w.b, "t");
  ASSERT_EQ(o.type, RObject::List);
  EXPECT_EQ(o.names(), (std::vector<std::string>{"inner", "s"}));
  EXPECT_EQ(o.items[0].names(), (std::vector<std::string>{"a"}));
  EXPECT_EQ(o.items[0].items[0].ints, (std::vector<std::int32_t>{7, 9}));
}

TEST(RData, Errors) {
  EXPECT_THROW(unserialize({'A', '\n'}, "t"), std::runtime_error);
  RWriter w;
  w.i32(16);
  w.i32(5);  // promises 5 strings, has none
  try {
    unserialize(w.b, "novel.rdb");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("novel.rdb: truncated"), std::string::npos) << e.what();
  }
  RWriter u;
  u.i32(4);  // ENVSXP: unsupported
  EXPECT_THROW(unserialize(u.b, "t"), std::runtime_error);
  EXPECT_THROW(inflate_zlib(reinterpret_cast<const std::uint8_t*>("junk"), 4, 10, "t"), std::runtime_error);
  EXPECT_THROW(gunzip({1, 2, 3}, "t"), std::runtime_error);
}

TEST(RData, LazyLoadDatabase) {
  // Two variables in one .rdb, indexed by a gzip'd .rdx as R writes them.
  std::vector<std::uint8_t> rdb;
  std::vector<std::pair<std::int32_t, std::int32_t>> loc;
  for (const auto& lines : {std::vector<std::string>{"EMMA", "By Jane Austen"}, std::vector<std::string>{"PERSUASION"}}) {
    RWriter w;
    w.strsxp(lines);
    const auto z = zlib_compress(w.b);
    loc.push_back({static_cast<std::int32_t>(rdb.size()), static_cast<std::int32_t>(z.size() + 4)});
    for (int s = 24; s >= 0; s -= 8) rdb.push_back(static_cast<std::uint8_t>(w.b.size() >> s));
    rdb.insert(rdb.end(), z.begin(), z.end());
  }
  RWriter x;
  x.i32(0x00000213);
  x.i32(1);
  x.i32(0x00000213);
  x.i32(2);
  for (auto [o, l] : loc) {
    x.i32(13);
    x.i32(2);
    x.i32(o);
    x.i32(l);
  }
  x.names_attr({"emma", "persuasion"}, true);
  x.names_attr({"variables"}, false);
  const fs::path d = tmpdir("lazy");
  const auto rdx = gzip(x.b);
  ckpt::write_file_atomic((d / "Rdata.rdx").string(), rdx.data(), rdx.size());
  ckpt::write_file_atomic((d / "Rdata.rdb").string(), rdb.data(), rdb.size());
  const auto vars = read_lazyload_strings((d / "Rdata.rdx").string(), (d / "Rdata.rdb").string());
  ASSERT_EQ(vars.size(), 2u);
  EXPECT_EQ(vars.at("emma"), (std::vector<std::string>{"EMMA", "By Jane Austen"}));
  EXPECT_EQ(vars.at("persuasion"), (std::vector<std::string>{"PERSUASION"}));
  // a corrupt blob names the file and the variable
  rdb[10] ^= 0xff;
  ckpt::write_file_atomic((d / "Rdata.rdb").string(), rdb.data(), rdb.size());
  try {
    read_lazyload_strings((d / "Rdata.rdx").string(), (d / "Rdata.rdb").string());
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("[emma]"), std::string::npos) << e.what();
  }
  fs::remove_all(d);
}

TEST(Idx, ParseAndErrors) {
  std::vector<std::uint8_t> b = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3};
  for (int i = 0; i < 12; ++i) b.push_back(static_cast<std::uint8_t>(i));
  const IdxArray a = parse_idx(b, "x");
  EXPECT_EQ(a.dims, (std::vector<std::int64_t>{2, 2, 3}));
  EXPECT_EQ(a.values[11], 11);
  const fs::path d = tmpdir("idx");
  const auto gz = gzip(b);
  ckpt::write_file_atomic((d / "a.gz").string(), gz.data(), gz.size());
  EXPECT_EQ(read_idx((d / "a.gz").string()).values, a.values);
  fs::remove_all(d);
  auto bad = b;
  bad.pop_back();
  EXPECT_THROW(parse_idx(bad, "x"), std::runtime_error);
  bad = b;
  bad[2] = 0x0d;  // float data
  EXPECT_THROW(parse_idx(bad, "x"), std::runtime_error);
  EXPECT_THROW(parse_idx({1, 2}, "x"), std::runtime_error);
}

TEST(Prepare, SplitsAreDeterministic) {
  std::vector<std::pair<std::string, std::vector<std::string>>> novels;
  novels.push_back({"emma", std::vector<std::string>(100, "e")});
  novels.push_back({"persuasion", {"p1", "p2"}});
  novels.push_back({"prideprejudice", std::vector<std::string>(40, "q")});
  const TextSplits s = split_novels(novels);
  EXPECT_EQ(s.test, "p1\np2\n");
  EXPECT_EQ(s.valid.size(), (5 + 2) * 2u);   // 5 % of 100 and of 40 lines
  EXPECT_EQ(s.train.size(), (95 + 38) * 2u);
  EXPECT_EQ(s.train.substr(0, 2), "e\n");
}

// The data-set fuzz targets' seed corpora (fuzz/corpus/{rdata,idx,gzip}) and regressions
// (fuzz/regressions/{rdata,idx,gzip}-*) through the same code the targets run (fuzz/harness_data.h):
// each seed must be accepted (bad_* rejected), each regression accepted or rejected, and a
// rejection must be a one-line std::runtime_error naming the input. Anything else fails.
TEST(FuzzRegressions, DataParsersHandleEveryKnownInput) {
  const fs::path fuzz_dir = fs::path(__FILE__).parent_path().parent_path() / "fuzz";
  using Run = void (*)(const std::vector<std::uint8_t>&, const std::string&);
  const std::map<std::string, Run> targets = {{"rdata", &fuzz::rdata}, {"idx", &fuzz::idx}, {"gzip", &fuzz::gzip}};
  auto replay = [](Run run, const fs::path& p) -> std::string {  // "" when accepted
    try {
      run(ckpt::read_file(p.string()), p.string());
      return "";
    } catch (const std::runtime_error& e) {
      const std::string w = e.what();
      EXPECT_EQ(w.rfind(p.string() + ": ", 0), 0u) << w;
      EXPECT_EQ(w.find('\n'), std::string::npos) << w;
      return w.empty() ? "?" : w;
    } catch (const std::exception& e) {
      ADD_FAILURE() << p << ": unexpected exception " << typeid(e).name() << ": " << e.what();
    } catch (...) {
      ADD_FAILURE() << p << ": unexpected non-std exception";
    }
    return "?";
  };
  int seeds = 0;
  for (const auto& [name, run] : targets) {
    const fs::path d = fuzz_dir / "corpus" / name;
    ASSERT_TRUE(fs::is_directory(d)) << d;
    for (const auto& e : fs::directory_iterator(d)) {
      ++seeds;
      const bool bad = e.path().filename().string().rfind("bad_", 0) == 0;
      const std::string why = replay(run, e.path());
      EXPECT_EQ(why.empty(), !bad) << name << " <- " << e.path().filename() << ": " << why;
    }
  }
  EXPECT_GE(seeds, 8);
  for (const auto& e : fs::directory_iterator(fuzz_dir / "regressions")) {
    const std::string f = e.path().filename().string();
    const auto it = targets.find(f.substr(0, f.find('-')));
    if (it != targets.end()) (void)replay(it->second, e.path());
  }
}
