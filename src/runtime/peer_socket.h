// A waiting request's connection, watched for its client going away. cpp-httplib 0.11 (Debian 12)
// hands a handler the peer's address but not the socket: the socket is found among this
// process's descriptors by its two ends. It stays open (and its descriptor is not reused) while
// the handler runs: the connection's thread closes it only after the handler returns.
#pragma once

#include <string>

namespace mfqat::runtime {

// The descriptor of the connected TCP socket whose peer is remote_addr:remote_port and whose local
// port is local_port; -1 when there is none (or /proc/self/fd cannot be read).
int find_peer_socket(const std::string& remote_addr, int remote_port, int local_port);

// True when the peer has closed or reset the connection (POLLRDHUP, POLLHUP or POLLERR; nothing
// is read from the socket, so a request body still unread stays there).
bool peer_closed(int fd);

}  // namespace mfqat::runtime
