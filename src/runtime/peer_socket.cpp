#include "peer_socket.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

namespace mfqat::runtime {

namespace {
// The address and port of one end of a socket ("127.0.0.1", "::1"), false if not INET/INET6.
bool end_of(int fd, bool peer, std::string& addr, int& port) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if ((peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) : getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len)) != 0) return false;
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    port = ntohs(a->sin6_port);
  } else {
    return false;
  }
  addr = buf;
  return true;
}
}  // namespace

// Other threads open and close descriptors while this scans them (httplib's listener accepts,
// its workers close finished connections). That is safe here: fstat/getsockname/getpeername on a
// descriptor closed meanwhile fail or describe whatever reuses the number, and a match needs the
// connection's own two ends, which only its socket has; that socket stays open while its handler
// runs (httplib closes it after the handler returns). ThreadSanitizer does not model the
// kernel's descriptor table as synchronised and reports such pairs as races: httplib's side is
// covered by tests/tsan.supp; two scans at once (one closing its directory descriptor while the
// other fstat()s it) are serialised here, which costs nothing that matters (a scan is a few
// hundred system calls, once per request still waiting after 0.25 s).
int find_peer_socket(const std::string& remote_addr, int remote_port, int local_port) {
  static std::mutex scan_mu;
  std::lock_guard<std::mutex> lk(scan_mu);
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  int found = -1;
  while (const dirent* e = readdir(d)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == dirfd(d)) continue;
    struct stat st{};
    if (fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    std::string addr, local;
    int port = 0, lport = 0;
    if (!end_of(static_cast<int>(fd), true, addr, port) || port != remote_port || addr != remote_addr) continue;
    if (!end_of(static_cast<int>(fd), false, local, lport) || lport != local_port) continue;
    found = static_cast<int>(fd);
    break;
  }
  closedir(d);
  return found;
}

bool peer_closed(int fd) {
  pollfd p{fd, static_cast<short>(POLLRDHUP), 0};
  if (poll(&p, 1, 0) < 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

}  // namespace mfqat::runtime
