"""The example of docs/python.md runs as written (with 20 training steps instead of 300)."""
import os
import re
import shutil
import subprocess
import sys

from conftest import ROOT


def test_the_documented_example_runs(tmp_path):
    doc = (ROOT / "docs/python.md").read_text()
    block = re.search(r"## Example.*?```python\n(.*?)```", doc, re.S).group(1)
    assert len(block.strip().splitlines()) <= 20
    assert "range(300)" in block
    (tmp_path / "ex.py").write_text(block.replace("range(300)", "range(20)"))
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    p = subprocess.run([sys.executable, "ex.py"], cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("mean loss over the three formats:")
    assert "mxfp4_e2m1" in lines[1] and (tmp_path / "toy.safetensors").exists()
