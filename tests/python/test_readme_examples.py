"""Every ```python block of README.md runs: each in a fresh interpreter, in an empty temporary
directory, with this process's environment (so the same torch_rational is imported)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks():
    """(line number of the first code line, code) of every ```python fenced block."""
    blocks, lines = [], README.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if re.fullmatch(r"\s*```python\s*", lines[i]):
            start, body = i + 2, []
            i += 1
            while i < len(lines) and not re.fullmatch(r"\s*```\s*", lines[i]):
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise AssertionError(f"README.md:{start - 1}: ```python block is never closed")
            blocks.append((start, "\n".join(body) + "\n"))
        i += 1
    return blocks


BLOCKS = python_blocks()


def test_readme_has_examples():
    assert len(BLOCKS) >= 5
    assert any("replace_activations(model)" in code for _, code in BLOCKS), "the replace-ReLU snippet is missing"


@pytest.mark.parametrize("line,code", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_block_runs(line, code, tmp_path):
    if "torch_rational.plot(" in code:
        pytest.importorskip("matplotlib")
    env = dict(os.environ)
    # The package this test session imports, also when it comes from PYTHONPATH or the source tree.
    import torch_rational

    package_root = str(Path(torch_rational.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    # One thread: the examples are tiny, and the fitter's many small parallel steps slow down by
    # an order of magnitude when other processes share the cores.
    env["OMP_NUM_THREADS"] = "1"
    # Leading newlines keep the reported line numbers equal to README.md's.
    script = "\n" * (line - 1) + code
    (tmp_path / "readme_block.py").write_text(script, encoding="utf-8")
    proc = subprocess.run([sys.executable, "readme_block.py"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:]).replace("readme_block.py", "README.md")
        pytest.fail(f"the ```python block at README.md:{line} failed (exit {proc.returncode}):\n{tail}",
                    pytrace=False)
