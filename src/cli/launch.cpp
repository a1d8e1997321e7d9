#include "launch.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace mfqat::cli {

namespace {

std::vector<std::string> g_args;

constexpr int kMaxRanks = 256;
pid_t g_pids[kMaxRanks];
volatile sig_atomic_t g_npids = 0;
volatile sig_atomic_t g_signalled = 0;

extern "C" void forward_signal(int sig) {
  g_signalled = sig;
  for (int i = 0; i < g_npids; ++i) {
    if (g_pids[i] > 0) ::kill(g_pids[i], sig);
  }
}

std::string describe(int status) {
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

void set_process_args(int argc, char** argv) { g_args.assign(argv, argv + argc); }
const std::vector<std::string>& process_args() { return g_args; }

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("cannot open a socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error(std::string("cannot find a free port on 127.0.0.1: ") + std::strerror(e));
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

void run_ranks(int nproc, const std::vector<std::vector<std::string>>& args) {
  if (nproc < 1 || nproc > kMaxRanks || static_cast<int>(args.size()) != nproc) {
    throw std::invalid_argument("--nproc must be in 1.." + std::to_string(kMaxRanks));
  }
  struct sigaction sa {};
  sa.sa_handler = forward_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int {}, old_term {};
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);
  const pid_t parent = ::getpid();
  std::fflush(nullptr);
  for (int r = 0; r < nproc; ++r) {
    std::vector<std::string> argv_s = {g_args.empty() ? std::string("mfqat") : g_args[0]};  // exec'ed as /proc/self/exe
    argv_s.insert(argv_s.end(), args[static_cast<std::size_t>(r)].begin(), args[static_cast<std::size_t>(r)].end());
    std::vector<char*> argv;
    argv.reserve(argv_s.size() + 1);
    for (auto& s : argv_s) argv.push_back(s.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      forward_signal(SIGTERM);
      throw std::runtime_error(std::string("cannot start rank ") + std::to_string(r) + ": " + std::strerror(errno));
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);  // the launcher is already gone
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      if (r != 0) {
        const int dn = ::open("/dev/null", O_WRONLY);
        if (dn >= 0) ::dup2(dn, 1);
      }
      ::execv("/proc/self/exe", argv.data());
      ::_exit(127);
    }
    g_pids[r] = pid;
    g_npids = r + 1;
  }
  // Wait for every rank. After the first failure the others get 3 s to notice it themselves (a
  // rank in a collective reports the lost peer), then SIGTERM, then SIGKILL 10 s later.
  int live = nproc, failed_rank = -1, failed_status = 0;
  std::chrono::steady_clock::time_point failed_at;
  bool termed = false;
  const auto signal_all = [&](int sig) {
    for (int i = 0; i < nproc; ++i) {
      if (g_pids[i] > 0) ::kill(g_pids[i], sig);
    }
  };
  while (live > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, failed_rank >= 0 ? WNOHANG : 0);
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) break;
    if (pid == 0) {
      const auto waited = std::chrono::steady_clock::now() - failed_at;
      if (!termed && waited > std::chrono::seconds(3)) {
        signal_all(SIGTERM);
        termed = true;
      }
      if (waited > std::chrono::seconds(13)) signal_all(SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    int r = 0;
    while (r < nproc && g_pids[r] != pid) ++r;
    if (r == nproc) continue;
    g_pids[r] = 0;
    --live;
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok && failed_rank < 0) {
      failed_rank = r;
      failed_status = status;
      failed_at = std::chrono::steady_clock::now();
    }
  }
  g_npids = 0;
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  if (g_signalled != 0) {
    const int sig = g_signalled;
    g_signalled = 0;
    throw std::runtime_error(std::string("interrupted (") + strsignal(sig) + "); every rank was stopped");
  }
  if (failed_rank >= 0) {
    throw std::runtime_error("rank " + std::to_string(failed_rank) + " of " + std::to_string(nproc) + " " + describe(failed_status) +
                             (nproc > 1 ? "; stopped the other ranks" : ""));
  }
}

}  // namespace mfqat::cli
