// `mfqat train --nproc N`: runs N ranks of a data-parallel job on this machine and supervises them.
#pragma once

#include <string>
#include <vector>

namespace mfqat::cli {

// The process's own argv, kept by main for launchers that re-run it.
void set_process_args(int argc, char** argv);
const std::vector<std::string>& process_args();

// A free TCP port on 127.0.0.1 (bound and released; the rendezvous takes it right after).
int free_loopback_port();

// Starts `nproc` copies of this executable with `args_for(rank)` (argv without argv[0]), rank 0
// with this process's stdout, the others' stdout discarded (every rank's stderr shows). Waits
// for all of them; when one fails (non-zero exit or a signal) the others get SIGTERM (SIGKILL
// after 10 s) and a one-line std::runtime_error names the rank. SIGINT/SIGTERM to the launcher
// reach every rank, and each rank dies with the launcher (PR_SET_PDEATHSIG).
void run_ranks(int nproc, const std::vector<std::vector<std::string>>& args);

}  // namespace mfqat::cli
