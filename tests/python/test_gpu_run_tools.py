"""The GPU run's tools, checked on the CPU so the one GPU call does not fail on a tool:
the benchmarks' --json output, the verdict against the targets, and the artifact's staleness check."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(SCRIPTS))

import gpu_artifact  # noqa: E402
import gpu_verdict  # noqa: E402


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=600)


def test_benchmarks_write_json_and_the_verdict_reads_it(tmp_path):
    r = run(SCRIPTS / "benchmark_gpu.py", "--device", "cpu", "--min-log2", "12", "--max-log2", "12",
            "--groups", "1", "channel_nhwc", "--dtypes", "float32", "--no-compile", "--rounds", "1",
            "--min-time", "0.001", "--warmup", "1", "--innermost-log2", "12", "--json", tmp_path / "benchmark_gpu.json")
    assert r.returncode == 0, r.stderr
    bench = json.loads((tmp_path / "benchmark_gpu.json").read_text())
    main = [rec for rec in bench["records"] if rec.get("section") != "channel_innermost"]
    innermost = [rec for rec in bench["records"] if rec.get("section") == "channel_innermost"]
    impls = {rec["impl"] for rec in main}
    assert {"torch_rational", "eager"} <= impls
    assert {rec["groups"] for rec in main} == {"1", "64nhwc"}
    assert all(rec["ms"] > 0 and rec["fraction_of_ceiling"] > 0 for rec in main)
    # The channel-innermost table: G = 1, C on channels_last and 768, 8 along channel_dim=-1.
    assert {rec["groups"] for rec in innermost} == {1, 64, 768, 8}
    assert all(rec["ms"] > 0 for rec in innermost)
    r = run(SCRIPTS / "benchmark_vgg_step.py", "--device", "cpu", "--batch", "2", "--width", "0.125",
            "--steps", "1", "--warmup", "0", "--json", tmp_path / "benchmark_vgg_step.json")
    assert r.returncode == 0, r.stderr
    (tmp_path / "steps.txt").write_text("artifact 0\ngtest 0\n")
    r = run(SCRIPTS / "gpu_verdict.py", "--out", tmp_path, "--steps", tmp_path / "steps.txt")
    results = json.loads((tmp_path / "results.json").read_text())
    status = {c["target"]: c["status"] for c in results["checks"]}
    assert status["steps"] == "met"
    assert status["compile"] == "not measured"  # --no-compile: no torch.compile row
    assert status["bandwidth"] in ("met", "missed") and status["vgg step"] in ("met", "missed")
    assert r.returncode == 1  # a target not measured is not a pass
    assert "GPU verdict" in (tmp_path / "verdict.txt").read_text()


def record(pass_name, fraction, speedup=None, log2=28, impl="torch_rational"):
    return {"dtype": "float32", "groups": "1", "log2_numel": log2, "pass": pass_name, "impl": impl, "ms": 1.0,
            "gb_per_s": 1.0, "fraction_of_ceiling": fraction, "ceiling_ms": fraction,
            "speedup_vs_compile": speedup}


@pytest.mark.parametrize("fwd,bwd,speedup,expect_bw,expect_compile", [
    (0.90, 0.86, 1.6, "met", "met"),
    (0.90, 0.84, 1.6, "missed", "met"),   # backward just under 85%
    (0.80, 0.90, 1.4, "missed", "missed"),
])
def test_verdict_thresholds(fwd, bwd, speedup, expect_bw, expect_compile):
    bench = {"records": [record("forward", fwd), record("backward", bwd), record("fwd+bwd", 0.9, speedup),
                         # smaller sizes do not count: only the largest measured
                         record("forward", 0.1, log2=20), record("fwd+bwd", 0.1, 0.1, log2=20)]}
    checks = {c["target"]: c["status"] for c in gpu_verdict.bandwidth_and_compile_checks(bench)}
    assert checks == {"bandwidth": expect_bw, "compile": expect_compile}
    assert gpu_verdict.vgg_check({"ms_per_step": {"relu": 10, "pau": 10.9}, "ratio_vs_relu": {"pau": 1.09}})[
        "status"] == "met"
    assert gpu_verdict.vgg_check({"ms_per_step": {"relu": 10, "pau": 11.2}, "ratio_vs_relu": {"pau": 1.12}})[
        "status"] == "missed"


def test_artifact_check_refuses_stale_sources_and_other_torch(tmp_path):
    root = tmp_path / "tree"
    for top in gpu_artifact.SOURCES:
        src = ROOT / top
        if src.is_file():
            (root / top).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / top)
        else:
            shutil.copytree(src, root / top, ignore=shutil.ignore_patterns("__pycache__"))
    art = tmp_path / "art"
    (art / "lib").mkdir(parents=True)
    (art / "lib" / "libtorch_rational.so.0").write_bytes(b"x" * 10)
    manifest = {"torch": torch.__version__, "cuda": None, "torch_cuda_arch_list": "9.0", "built": "now",
                "source_digest": gpu_artifact.source_digest(root), "files": {"lib/libtorch_rational.so.0": 10}}
    (art / "manifest.json").write_text(json.dumps(manifest))
    assert gpu_artifact.check(art, root) == []
    kernel = root / "kernels" / "rational.cuh"
    kernel.write_text(kernel.read_text() + "\n// changed\n")
    assert any("stale" in p for p in gpu_artifact.check(art, root))
    manifest.update(source_digest=gpu_artifact.source_digest(root), torch="0.0.1")
    (art / "manifest.json").write_text(json.dumps(manifest))
    assert any("torch 0.0.1" in p for p in gpu_artifact.check(art, root))


# Plays rational_train for gpu_train_check.py: writes summary.json as the real one does, with the device
# and loss that FAKE_TRAIN asks for ("ok", "wrong_device", "nan_loss" or "fail").
FAKE_TRAIN = """#!{python}
import json, math, os, sys
argv = sys.argv[1:]
device, out = argv[argv.index("--device") + 1], argv[argv.index("--output") + 1]
mode = os.environ["FAKE_TRAIN"]
if mode == "fail":
    sys.exit("error: out of memory")
os.makedirs(out)
summary = {{"device": "cpu" if mode == "wrong_device" else device, "test_accuracy": 0.5,
            "final_train_loss": math.nan if mode == "nan_loss" else 0.25}}
open(os.path.join(out, "summary.json"), "w").write(json.dumps(summary))
"""


@pytest.mark.parametrize("mode, problem", [("ok", None), ("wrong_device", "summary.json says device 'cpu'"),
                                           ("nan_loss", "final training loss nan"), ("fail", "exit status 1")])
def test_train_check_passes_only_finished_runs_on_the_device_asked_for(tmp_path, monkeypatch, mode, problem):
    fake = tmp_path / "rational_train"
    fake.write_text(FAKE_TRAIN.format(python=sys.executable))
    fake.chmod(0o755)
    monkeypatch.setenv("FAKE_TRAIN", mode)
    r = run(SCRIPTS / "gpu_train_check.py", "--binary", fake, "--devices", "cuda", "--models", "lenet,vgg8",
            "--json", tmp_path / "train.json")
    rows = json.loads((tmp_path / "train.json").read_text())["rows"]
    assert [(row["model"], row["device"]) for row in rows] == [("lenet", "cuda"), ("vgg8", "cuda")]
    if problem is None:
        assert r.returncode == 0, r.stdout + r.stderr
        assert all(row["problems"] == [] and row["final_train_loss"] == 0.25 for row in rows)
    else:
        assert r.returncode == 1
        assert all(problem in "; ".join(row["problems"]) for row in rows), rows
