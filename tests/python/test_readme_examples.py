"""Every ```python block of README.md runs.

The blocks run in one fresh interpreter (started once: importing torch dominates the cost of these
small examples), each with a fresh namespace, in its own empty temporary directory, compiled with
README.md's line numbers so a failure points at the README line. One test per block.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

RUNNER = r"""
import contextlib, io, json, os, sys, traceback
blocks, out_dir, result_path = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
results = {}
for line, code in blocks:
    cwd = os.path.join(out_dir, f"block_{line}")
    os.makedirs(cwd)
    os.chdir(cwd)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            exec(compile("\n" * (line - 1) + code, "README.md", "exec"), {"__name__": "__main__"})
        results[line] = None
    except BaseException:
        results[line] = buf.getvalue()[-2000:] + traceback.format_exc(limit=-6)
with open(result_path, "w") as f:
    json.dump(results, f)
"""


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


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    import torch_rational

    tmp = tmp_path_factory.mktemp("readme")
    env = dict(os.environ)
    # The package this session imports, also when it comes from PYTHONPATH or the source tree.
    package_root = str(Path(torch_rational.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    # One thread: the examples are tiny, and the fitter's many small parallel steps slow down by
    # an order of magnitude when other processes share the cores.
    env["OMP_NUM_THREADS"] = "1"
    blocks = [(line, code) for line, code in BLOCKS
              if "torch_rational.plot(" not in code or _has_matplotlib()]
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(blocks), str(tmp), str(tmp / "results.json")],
                          env=env, capture_output=True, text=True, timeout=550, check=False)
    if proc.returncode != 0 or not (tmp / "results.json").is_file():
        pytest.fail(f"the README runner itself failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", pytrace=False)
    return {int(k): v for k, v in json.loads((tmp / "results.json").read_text()).items()}


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_readme_has_examples():
    assert len(BLOCKS) >= 5
    assert any("replace_activations(model)" in code for _, code in BLOCKS), "the replace-ReLU snippet is missing"


@pytest.mark.parametrize("line", [line for line, _ in BLOCKS], ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_block_runs(line, results):
    if line not in results:
        pytest.skip("needs matplotlib")
    if results[line] is not None:
        pytest.fail(f"the ```python block at README.md:{line} failed:\n{results[line]}", pytrace=False)
