"""The llama.cpp client shared by the export tests: where node-llama-cpp is installed, or a skip."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLIENT = os.path.join(HERE, "llama_cpp_client.mjs")


def llama_cpp_dir():
    """The cache directory of scripts/npm_llama_cpp.sh; exits 77 (CTest SKIP) with the reason when
    node or the npm package cannot be had."""
    if subprocess.run(["bash", "-c", "command -v node"], capture_output=True).returncode != 0:
        print("SKIP: node is not installed (bash scripts/setup.sh)")
        sys.exit(77)
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "npm_llama_cpp.sh")], capture_output=True, text=True)
    if r.returncode == 77:
        print(f"SKIP: node-llama-cpp unavailable: {r.stderr.strip()}")
        sys.exit(77)
    if r.returncode != 0:
        sys.exit(f"FAIL: scripts/npm_llama_cpp.sh exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout.strip()
