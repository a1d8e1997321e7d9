#include "mfqat/data/prepare.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "mfqat/ckpt/file.h"
#include "mfqat/data/idx.h"
#include "mfqat/data/rdata.h"

extern char** environ;

namespace mfqat::data {

namespace fs = std::filesystem;

namespace {

constexpr const char* kAustenPkg = "r-cran-janeaustenr";
constexpr const char* kAustenDir = "usr/lib/R/site-library/janeaustenr/data";
constexpr const char* kFashionPkg = "dataset-fashion-mnist";
constexpr const char* kFashionDir = "usr/share/datasets/fashion-mnist";
const char* const kFashionFiles[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                     "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};

// Runs argv in `cwd` (no shell), output appended to `log_path`; throws with the command line
// and the log's path when it fails.
void run(const std::vector<std::string>& argv, const std::string& cwd, const std::string& log_path) {
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  const fs::path old = fs::current_path();
  fs::current_path(cwd);
  pid_t pid;
  const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  fs::current_path(old);
  posix_spawn_file_actions_destroy(&fa);
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
  if (rc != 0) throw std::runtime_error("cannot run '" + cmd + "': " + std::strerror(rc));
  int st = 0;
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) throw std::runtime_error("'" + cmd + "' failed (in " + cwd + "; see " + log_path + ")");
}

// The root under which a package's files are: "/" when installed, else DIR/cache/root after
// fetching and unpacking its .deb.
std::string package_root(const std::string& pkg, const std::string& probe, const std::string& cache, const Logger& log) {
  if (fs::exists(fs::path("/") / probe)) return "/";
  const fs::path debs = fs::path(cache) / "debs", root = fs::path(cache) / "root";
  fs::create_directories(debs);
  fs::create_directories(root);
  if (!fs::exists(root / probe)) {
    log("fetching " + pkg + " with apt-get download");
    for (const auto& e : fs::directory_iterator(debs)) {
      if (e.path().filename().string().rfind(pkg + "_", 0) == 0) fs::remove(e.path());
    }
    const std::string log_path = (fs::absolute(cache) / "commands.log").string();
    run({"apt-get", "download", pkg}, debs.string(), log_path);
    std::string deb;
    for (const auto& e : fs::directory_iterator(debs)) {
      if (e.path().filename().string().rfind(pkg + "_", 0) == 0) deb = fs::absolute(e.path()).string();  // run() changes directory
    }
    if (deb.empty()) throw std::runtime_error("apt-get download " + pkg + " left no .deb in " + debs.string());
    run({"dpkg-deb", "-x", deb, fs::absolute(root).string()}, debs.string(), log_path);
    if (!fs::exists(root / probe)) throw std::runtime_error(deb + ": has no " + probe);
  }
  return root.string();
}

PreparedFile write_text(const fs::path& p, const std::string& s) {
  ckpt::write_file_atomic(p.string(), s.data(), s.size());
  return {p.string(), s.size(), fnv1a64(s.data(), s.size())};
}

}  // namespace

std::uint64_t fnv1a64(const void* data, std::size_t n) {
  std::uint64_t h = 1469598103934665603ull;
  const auto* p = static_cast<const std::uint8_t*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

TextSplits split_novels(const std::vector<std::pair<std::string, std::vector<std::string>>>& novels) {
  TextSplits s;
  for (const auto& [name, lines] : novels) {
    if (name == kTestNovel) {
      for (const auto& l : lines) s.test += l + "\n";
      continue;
    }
    const std::size_t nvalid = static_cast<std::size_t>(static_cast<double>(lines.size()) * kValidFraction);
    const std::size_t ntrain = lines.size() - nvalid;
    for (std::size_t i = 0; i < lines.size(); ++i) (i < ntrain ? s.train : s.valid) += lines[i] + "\n";
  }
  return s;
}

PrepareResult prepare(const PrepareOptions& opt, const Logger& log) {
  const fs::path dir(opt.data_dir);
  const fs::path manifest = dir / "manifest.json";
  PrepareResult res;
  nlohmann::json m = nlohmann::json::object();
  if (!opt.force && fs::exists(manifest)) {
    try {
      m = nlohmann::json::parse(ckpt::read_file(manifest.string()));
    } catch (const std::exception&) {
      m = nlohmann::json::object();
    }
    bool ok = m.is_object() && m.contains("files") && (!opt.austen || m.contains("austen")) && (!opt.fashion || m.contains("fashion"));
    if (ok) {
      for (const auto& f : m["files"]) {
        const std::string p = f["path"].get<std::string>();
        if (!fs::exists(p) || fs::file_size(p) != f["bytes"].get<std::uint64_t>()) ok = false;
      }
    }
    if (ok) {
      res.cached = true;
      for (const auto& f : m["files"]) res.files.push_back({f["path"], f["bytes"], f["fnv1a"]});
      return res;
    }
  }
  fs::create_directories(dir);
  const std::string cache = (dir / "cache").string();
  nlohmann::json files = nlohmann::json::array();
  auto record = [&](const PreparedFile& f) {
    res.files.push_back(f);
    files.push_back({{"path", f.path}, {"bytes", f.bytes}, {"fnv1a", f.fnv1a}});
  };
  if (opt.austen) {
    const std::string root = package_root(kAustenPkg, std::string(kAustenDir) + "/Rdata.rdx", cache, log);
    const fs::path d = fs::path(root) / kAustenDir;
    log("decoding the Austen novels (R data)");
    const auto vars = read_lazyload_strings((d / "Rdata.rdx").string(), (d / "Rdata.rdb").string());
    const char* order[] = {"emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility"};
    std::vector<std::pair<std::string, std::vector<std::string>>> novels;
    for (const char* n : order) {
      const auto it = vars.find(n);
      if (it == vars.end()) throw std::runtime_error((d / "Rdata.rdx").string() + ": novel '" + n + "' is missing");
      novels.emplace_back(n, it->second);
      res.novels.emplace_back(n, it->second.size());
    }
    fs::create_directories(dir / "austen");
    const TextSplits s = split_novels(novels);
    record(write_text(dir / "austen" / "train.txt", s.train));
    record(write_text(dir / "austen" / "valid.txt", s.valid));
    record(write_text(dir / "austen" / "test.txt", s.test));
    nlohmann::json a = nlohmann::json::object();
    for (const auto& [n, l] : res.novels) a[n] = l;
    m["austen"] = {{"lines", a}, {"test_novel", kTestNovel}, {"valid_fraction", kValidFraction}};
  }
  if (opt.fashion) {
    const std::string root = package_root(kFashionPkg, std::string(kFashionDir) + "/" + kFashionFiles[0], cache, log);
    fs::create_directories(dir / "fashion-mnist");
    log("checking Fashion-MNIST (IDX)");
    for (const char* f : kFashionFiles) {
      const fs::path src = fs::path(root) / kFashionDir / f, dst = dir / "fashion-mnist" / f;
      const auto bytes = ckpt::read_file(src.string());
      (void)parse_idx(gunzip(bytes, src.string()), src.string());  // validate before caching
      ckpt::write_file_atomic(dst.string(), bytes.data(), bytes.size());
      record({dst.string(), bytes.size(), fnv1a64(bytes.data(), bytes.size())});
    }
    m["fashion"] = {{"valid_images", kFashionValid}};
  }
  m["files"] = files;
  const std::string js = m.dump(2);
  ckpt::write_file_atomic(manifest.string(), js.data(), js.size());
  return res;
}

}  // namespace mfqat::data
