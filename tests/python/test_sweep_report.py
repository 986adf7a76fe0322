"""scripts/sweep.py and scripts/report.py against fake run directories and a fake rational_train.

Nothing here needs the real binary: run directories are written in the run-directory format by the test,
and sweep.py drives a small Python script that plays rational_train. Expected table values come from numpy
on the values the test wrote, not from report.py's own arithmetic.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts"
METRICS_HEADER = "epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,seconds,images_per_second"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


report = load_script("report")
sweep = load_script("sweep")


# ------------------------------------------------------------------------------------------------
# Fake run directories


def write_run(root: Path, model, dataset, activation, seed, accs, *, seconds=10.0, learnable=False, options=None):
    """A run directory exactly as rational_train writes it; accs = test accuracy per epoch (fractions)."""
    d = root / f"{model}_{dataset}_{activation}_s{seed}"
    d.mkdir(parents=True)
    x = np.linspace(-4, 4, 201)
    curves, params = [], {}
    if learnable:
        for i, slot in enumerate(["act1", "act2"]):
            y_init = np.where(x > 0, x, 0.01 * x)
            curves.append({"slot": slot, "type": activation.upper(), "x": x.tolist(),
                           "y": (y_init + 0.1 * (i + 1) * np.sin(x + seed)).tolist(), "y_init": y_init.tolist()})
            params[slot] = {"numerator": [0.1, 0.5, 0.3], "denominator": [0.2, 0.1]}
    summary = {
        "model": model, "dataset": dataset, "activation": activation, "activation_options": options or {},
        "seed": seed, "epochs": len(accs), "test_accuracy": accs[-1], "best_test_accuracy": max(accs),
        "best_epoch": int(np.argmax(accs)) + 1, "final_train_loss": 0.3, "seconds": seconds, "device": "cpu",
        "threads": 1, "config": {"model": model, "dataset": dataset, "epochs": len(accs)},
        "activation_parameters": params, "activation_curves": curves,
    }
    (d / "summary.json").write_text(json.dumps(summary))
    with open(d / "metrics.csv", "w", newline="") as f:
        f.write(METRICS_HEADER + "\n")
        w = csv.writer(f)
        for e, a in enumerate(accs, 1):
            w.writerow([e, 1.0 / e, a - 0.01, 0.5 / e, a, 0.001, 5.0, 1000.0])
    return d


def fake_sweep(root: Path, rng=None):
    """relu (fixed) and pau (learnable), 3 seeds each, 3 epochs. Returns {activation: (final, best, seconds)}."""
    rng = rng or np.random.default_rng(7)
    values = {}
    for act, base in (("relu", 0.86), ("pau", 0.87)):
        finals, bests, secs = [], [], []
        for seed in range(3):
            accs = [base - 0.05, base + rng.uniform(0.0, 0.02), base + rng.uniform(-0.01, 0.01)]
            s = float(rng.uniform(5, 15))
            write_run(root, "lenet", "fashion-mnist", act, seed, accs, seconds=s, learnable=act == "pau")
            finals.append(accs[-1])
            bests.append(max(accs))
            secs.append(s)
        values[act] = (np.array(finals), np.array(bests), np.array(secs))
    return values


def parse_table(md: str) -> dict[str, dict[str, str]]:
    """Markdown table rows by activation name (bold markers removed)."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        row = dict(zip(header, cells))
        rows[row["activation"].strip("*")] = row
    return rows


def pct(mean_std: str) -> tuple[float, str]:
    mean, std = mean_std.split(" ± ")
    return float(mean), std


def run_script(script: str, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS / script), *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, check=False)


def assert_png(path: Path):
    assert path.is_file(), f"{path} missing"
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"


# ------------------------------------------------------------------------------------------------
# report.py


def test_report_table_matches_numpy(tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    values = fake_sweep(sweep_dir)
    out = tmp_path / "report"
    assert report.main([str(sweep_dir), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    md = (out / "results.md").read_text()
    rows = parse_table(md)
    assert set(rows) == {"relu", "pau"}
    assert parse_table(printed) == rows, "the printed table must be the one in results.md"

    for act, (finals, bests, secs) in values.items():
        row = rows[act]
        mean, std = pct(row["test acc. % (mean ± std)"])
        assert mean == pytest.approx(100 * np.mean(finals), abs=0.006)
        assert float(std) == pytest.approx(100 * np.std(finals, ddof=1), abs=0.006)
        bmean, bstd = pct(row["best acc. % (mean ± std)"])
        assert bmean == pytest.approx(100 * np.mean(bests), abs=0.006)
        assert float(bstd) == pytest.approx(100 * np.std(bests, ddof=1), abs=0.006)
        assert float(row["seconds / run"]) == pytest.approx(np.mean(secs), abs=0.06)
        assert row["n"] == "3" and row["epochs"] == "3"
        assert row["model"] == "lenet" and row["dataset"] == "fashion-mnist"

    # Rows by mean accuracy, best first; relu is the only fixed one, so it is the best fixed.
    order = [r for r in parse_table(md)]
    expected_order = sorted(values, key=lambda a: -np.mean(values[a][0]))
    assert order == expected_order
    assert rows["relu"]["kind"] == "fixed" and rows["pau"]["kind"] == "learnable"
    assert "best fixed" in rows["relu"]["vs. best fixed"]
    diff = np.mean(values["pau"][0]) - np.mean(values["relu"][0])
    tol = max(np.std(values["pau"][0], ddof=1), np.std(values["relu"][0], ddof=1))
    verdict = rows["pau"]["vs. best fixed"]
    expected = "beats" if diff > tol else ("matches" if abs(diff) <= tol else "below")
    assert verdict.startswith(expected), verdict

    assert_png(out / "accuracy_curves.png")
    assert_png(out / "activations.png")
    assert "accuracy_curves.png" in md and "activations.png" in md


def test_report_verdicts_matches_and_below(tmp_path):
    # Means chosen so the verdicts are unambiguous: relu 90 ± 1, pau 89.5 (within 1 std), era 85 (below),
    # pwlu 90.5 (above, but within 1 std: a match), apl 92 ± 0.1 (above by more than 1 std: beats).
    for seed, (r, p, e, w, a) in enumerate([(0.89, 0.885, 0.84, 0.895, 0.919), (0.90, 0.895, 0.85, 0.905, 0.92),
                                            (0.91, 0.905, 0.86, 0.915, 0.921)]):
        write_run(tmp_path, "vgg8", "mnist", "relu", seed, [r])
        write_run(tmp_path, "vgg8", "mnist", "pau", seed, [p], learnable=True)
        write_run(tmp_path, "vgg8", "mnist", "era", seed, [e], learnable=True)
        write_run(tmp_path, "vgg8", "mnist", "pwlu", seed, [w], learnable=True)
        write_run(tmp_path, "vgg8", "mnist", "apl", seed, [a], learnable=True)
    write_run(tmp_path, "vgg8", "mnist", "swish", 0, [0.80])  # a worse fixed one, n = 1
    out = tmp_path / "out"
    assert report.main([str(tmp_path), "--output", str(out), "--no-plots"]) == 0
    rows = parse_table((out / "results.md").read_text())
    assert rows["relu"]["vs. best fixed"] == "**best fixed**"
    assert rows["pau"]["vs. best fixed"].startswith("matches relu")
    assert rows["era"]["vs. best fixed"].startswith("below relu")
    assert rows["pwlu"]["vs. best fixed"].startswith("matches relu (+0.50 pp")
    assert rows["apl"]["vs. best fixed"] == "beats relu (+2.00 pp)"
    assert rows["swish"]["vs. best fixed"] == ""
    assert rows["swish"]["test acc. % (mean ± std)"] == "80.00 ± —"
    assert list(rows) == ["apl", "pwlu", "relu", "pau", "era", "swish"]


def test_report_incomplete_runs_are_listed_not_fatal(tmp_path, capsys):
    fake_sweep(tmp_path / "sweep")
    partial = tmp_path / "sweep" / "lenet_fashion-mnist_era_s0"
    partial.mkdir()
    (partial / "metrics.csv").write_text(METRICS_HEADER + "\n1,0.5,0.8,0.6,0.79,0.001,5.0,1000\n")
    corrupt = tmp_path / "sweep" / "lenet_fashion-mnist_era_s1"
    corrupt.mkdir()
    (corrupt / "summary.json").write_text('{"model": "lenet", "data')  # killed mid-write
    (tmp_path / "sweep" / "sweep.json").write_text(json.dumps({"runs": ["lenet_fashion-mnist_era_s2"]}))
    out = tmp_path / "report"
    assert report.main([str(tmp_path / "sweep"), "--output", str(out)]) == 0
    md = (out / "results.md").read_text()
    assert "## Incomplete runs" in md
    for name in ("era_s0", "era_s1", "era_s2"):
        assert f"lenet_fashion-mnist_{name}" in md
    assert "not started" in md and "unreadable summary.json" in md
    assert set(parse_table(md)) == {"relu", "pau"}
    assert "3 incomplete run(s)" in capsys.readouterr().out


def test_report_synthetic_note_and_curves_without_init(tmp_path):
    d = write_run(tmp_path, "lenet", "mnist", "pau", 0, [0.5], learnable=True)
    summary = json.loads((d / "summary.json").read_text())
    summary["synthetic"] = True
    del summary["activation_curves"][0]["y_init"]
    summary["activation_curves"][1]["y_init"] = []
    summary["activation_curves"].append({"slot": "broken", "x": [0.0, 1.0], "y": [0.0]})  # skipped
    (d / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "out"
    assert report.main([str(d), "--output", str(out)]) == 0
    md = (out / "results.md").read_text()
    assert "1 of these runs trained on generated data" in md
    assert parse_table(md)["pau"]["vs. best fixed"] == "no fixed baseline"
    assert_png(out / "activations.png")


def test_report_splits_by_differing_options_and_warns_on_duplicate_seeds(tmp_path, capsys):
    common = {"version": "A", "basis": "power", "groups": 1}
    for seed in range(2):
        write_run(tmp_path / "a", "lenet", "mnist", "pau", seed, [0.9], learnable=True,
                  options={**common, "degrees": [5, 4]})
        write_run(tmp_path / "b", "lenet", "mnist", "pau", seed, [0.8], learnable=True,
                  options={**common, "degrees": [3, 2]})
    write_run(tmp_path / "c", "lenet", "mnist", "relu", 0, [0.85])
    write_run(tmp_path / "d", "lenet", "mnist", "relu", 0, [0.87])  # the same seed again
    out = tmp_path / "out"
    assert report.main([str(tmp_path / x) for x in "abcd"] + ["--output", str(out), "--no-plots"]) == 0
    rows = parse_table((out / "results.md").read_text())
    # Only the option that differs goes into the label.
    assert set(rows) == {"pau (degrees=5,4)", "pau (degrees=3,2)", "relu"}
    assert rows["pau (degrees=5,4)"]["n"] == "2" and rows["relu"]["n"] == "2"
    assert "seed 0 counted 2 times" in capsys.readouterr().err
    assert "## Warnings" in (out / "results.md").read_text()


def test_report_without_matplotlib(tmp_path, monkeypatch, capsys):
    fake_sweep(tmp_path / "sweep")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    out = tmp_path / "report"
    assert report.main([str(tmp_path / "sweep"), "--output", str(out)]) == 0
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert (out / "results.md").is_file()
    assert not (out / "accuracy_curves.png").exists()


PRUNING_HEADER = "round,pruned_fraction,test_accuracy,test_loss,alive_filters,total_filters"


def write_pruning(run_dir: Path, rows):
    """pruning.csv as rational_train --prune-rounds writes it; rows = [(pruned fraction, test accuracy)]."""
    with open(run_dir / "pruning.csv", "w", newline="") as f:
        f.write(PRUNING_HEADER + "\n")
        for r, (frac, acc) in enumerate(rows):
            alive = round(142 * (1 - frac))
            csv.writer(f).writerow([r, frac, acc, 0.5, alive, 142])


def test_report_pruning_plot_and_table(tmp_path, capsys, monkeypatch):
    """Runs with pruning.csv: pruning.png (mean over seeds per activation) and a results.md section."""
    fracs = [0.0, 0.2, 0.36]
    accs = {"relu": [[0.86, 0.84, 0.80], [0.88, 0.82, 0.78]], "pau": [[0.87, 0.86, 0.85], [0.89, 0.88, 0.83]]}
    for act, per_seed in accs.items():
        for seed, a in enumerate(per_seed):
            d = write_run(tmp_path / "sweep", "vgg8", "fashion-mnist", act, seed, [a[-1]], learnable=act == "pau")
            write_pruning(d, list(zip(fracs, a)))
    # One run without pruning.csv (another experiment in the same tree) is no pruning line.
    write_run(tmp_path / "sweep", "lenet", "fashion-mnist", "relu", 0, [0.8])

    drawn = []
    real_plot = report.plot_pruning

    def spy(plt, groups, path):
        for g in groups:
            if any(r.pruning for r in g.runs):
                drawn.append((g.model, g.activation, report.pruning_curve(g)))
        real_plot(plt, groups, path)

    monkeypatch.setattr(report, "plot_pruning", spy)
    out = tmp_path / "report"
    assert report.main([str(tmp_path / "sweep"), "--output", str(out)]) == 0
    assert_png(out / "pruning.png")
    assert sorted((m, a) for m, a, _ in drawn) == [("vgg8", "pau"), ("vgg8", "relu")]
    for model, act, (xs, means, stds) in drawn:
        arr = 100 * np.array(accs[act])
        assert xs == pytest.approx([100 * f for f in fracs])
        assert means == pytest.approx(arr.mean(axis=0).tolist())
        assert stds == pytest.approx(arr.std(axis=0, ddof=1).tolist())
    md = (out / "results.md").read_text()
    assert "## Filter pruning" in md and "pruning.png" in md
    # Last round: relu 80 and 78 % -> 79.00 ± 1.41; pau 85 and 83 % -> 84.00 ± 1.41.
    assert "36.0%: 79.00 ± 1.41" in md and "36.0%: 84.00 ± 1.41" in md
    assert "pruning.png" in capsys.readouterr().out


def test_report_without_pruning_writes_no_pruning_plot(tmp_path):
    fake_sweep(tmp_path / "sweep")
    out = tmp_path / "report"
    assert report.main([str(tmp_path / "sweep"), "--output", str(out)]) == 0
    assert not (out / "pruning.png").exists()
    assert "Filter pruning" not in (out / "results.md").read_text()


def test_report_cli(tmp_path):
    fake_sweep(tmp_path / "sweep")
    out = tmp_path / "report"
    res = run_script("report.py", tmp_path / "sweep", "--output", out)
    assert res.returncode == 0, res.stderr
    assert "| lenet | fashion-mnist |" in res.stdout
    assert_png(out / "accuracy_curves.png")
    assert_png(out / "activations.png")
    res = run_script("report.py", tmp_path / "nope", "--output", out)
    assert res.returncode == 2 and "nope" in res.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run_script("report.py", empty, "--output", out)
    assert res.returncode == 1 and "no completed run" in res.stderr


@pytest.mark.parametrize("script", ["sweep.py", "report.py"])
def test_help(script):
    res = run_script(script, "--help")
    assert res.returncode == 0 and "usage:" in res.stdout


# ------------------------------------------------------------------------------------------------
# sweep.py

# Plays rational_train: parses the flags sweep.py passes, logs its argv, optionally waits until PARALLEL
# runs have started (proof that they run at the same time, with no timing in the test), then writes
# metrics.csv and summary.json. Activation "bad" fails; "nosummary" exits 0 without a summary.
FAKE_BINARY = textwrap.dedent("""\
    #!{python}
    import json, os, sys, time
    from pathlib import Path
    argv = sys.argv[1:]
    args, flags = {{}}, set()
    i = 0
    while i < len(argv):
        if argv[i] in ("--resume", "--synthetic"):
            flags.add(argv[i]); i += 1
        else:
            args[argv[i]] = argv[i + 1]; i += 2
    out = Path(args["--output"])
    calls = Path(os.environ["FAKE_CALLS"])
    with open(calls / (out.name + ".argv"), "a") as f:
        f.write(json.dumps(sys.argv[1:]) + "\\n")
    print("fake rational_train stdout", out.name, flush=True)
    if os.environ.get("FAKE_TEE") == "1":  # like the real binary: stdout copied into DIR/log.txt
        with open(out / "log.txt", "a") as f:
            f.write(f"fake rational_train stdout {{out.name}}\\n")
    print("fake rational_train stderr", out.name, file=sys.stderr)
    parallel = int(os.environ.get("FAKE_PARALLEL", "0"))
    if parallel:
        (calls / (out.name + ".started")).touch()
        deadline = time.time() + 30
        while len(list(calls.glob("*.started"))) < parallel:
            if time.time() > deadline:
                print("never saw", parallel, "runs at once", file=sys.stderr); sys.exit(3)
            time.sleep(0.02)
    act = args["--activation"]
    if act == "bad":
        print("error: boom", file=sys.stderr); sys.exit(1)
    if act == "nosummary":
        sys.exit(0)
    epochs = int(args.get("--epochs", "2"))
    with open(out / "metrics.csv", "w") as f:
        f.write("{header}\\n")
        for e in range(1, epochs + 1):
            f.write(f"{{e}},0.5,0.8,0.5,0.8,0.001,1.0,100\\n")
    seed = int(args["--seed"])
    summary = dict(model=args["--model"], dataset=args["--dataset"], activation=act, activation_options={{}},
                   seed=seed, epochs=epochs, test_accuracy=0.8 + 0.01 * seed, best_test_accuracy=0.8 + 0.01 * seed,
                   best_epoch=epochs, final_train_loss=0.5, seconds=1.0, device="cpu",
                   threads=int(args["--threads"]), config={{}}, activation_parameters={{}}, activation_curves=[])
    (out / "summary.json.tmp").write_text(json.dumps(summary))
    os.replace(out / "summary.json.tmp", out / "summary.json")
""")


@pytest.fixture
def fake_binary(tmp_path, monkeypatch):
    path = tmp_path / "bin" / "rational_train"
    path.parent.mkdir()
    path.write_text(FAKE_BINARY.format(python=sys.executable, header=METRICS_HEADER))
    path.chmod(0o755)
    calls = tmp_path / "calls"
    calls.mkdir()
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    return path


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "lenet_fashion_mnist.json"
    path.write_text(json.dumps({"model": "lenet", "dataset": "fashion-mnist", "epochs": 5, "source": "test"}))
    return path


def run_sweep(*args, env=None):
    return run_script("sweep.py", *args, env=env)


def calls_of(tmp_path) -> dict[str, list[list[str]]]:
    return {p.stem: [json.loads(line) for line in p.read_text().splitlines()]
            for p in (tmp_path / "calls").glob("*.argv")}


def test_dry_run_lists_commands_and_dirs(tmp_path, fake_binary, config):
    out = tmp_path / "sweep"
    res = run_sweep("--config", config, "--activations", "relu,pau", "--seeds", "0,1", "--epochs", "3",
                    "--output", out, "--binary", fake_binary, "--jobs", "2", "--dry-run", "--",
                    "--train-subset", "100", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    commands = [shlex.split(ln.strip()) for ln in res.stdout.splitlines() if ln.strip().startswith(str(fake_binary))]
    assert len(commands) == 4
    expected_dirs = [out / f"lenet_fashion-mnist_{a}_s{s}" for a in ("relu", "pau") for s in (0, 1)]
    for cmd, (act, seed), d in zip(commands, [(a, s) for a in ("relu", "pau") for s in (0, 1)], expected_dirs):
        assert str(d) in res.stdout
        opts = dict(zip(cmd[1:-4:2], cmd[2:-4:2]))
        assert opts == {"--config": str(config), "--model": "lenet", "--dataset": "fashion-mnist",
                        "--activation": act, "--seed": str(seed), "--epochs": "3", "--output": str(d),
                        "--threads": str(max(1, sweep.available_cores() // 2))}
        assert cmd[-4:] == ["--train-subset", "100", "--device", "cpu"]
    assert not out.exists(), "a dry run must not create anything"
    assert not calls_of(tmp_path)


def test_dry_run_flags_override_config_and_plan_resume(tmp_path, fake_binary, config):
    out = tmp_path / "sweep"
    # An interrupted run (checkpoint, no summary), a finished one, and one finished with fewer epochs.
    (out / "vgg8_mnist_pau_s0").mkdir(parents=True)
    (out / "vgg8_mnist_pau_s0" / "checkpoint.pt").write_bytes(b"x")
    write_run(out, "vgg8", "mnist", "pau", 1, [0.9, 0.91, 0.92, 0.93, 0.94])
    write_run(out, "vgg8", "mnist", "relu", 0, [0.9, 0.91])
    (out / "vgg8_mnist_relu_s0" / "checkpoint.pt").write_bytes(b"x")
    res = run_sweep("--config", config, "--model", "vgg8", "--dataset", "mnist", "--activations", "pau,relu",
                    "--seeds", "0-1", "--output", out, "--binary", fake_binary, "--dry-run")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert any(ln.startswith("[resume]") and "vgg8_mnist_pau_s0" in ln for ln in lines)
    assert any(ln.startswith("[skip]") and "vgg8_mnist_pau_s1" in ln for ln in lines)  # 5 epochs = config's
    assert any(ln.startswith("[resume]") and "vgg8_mnist_relu_s0" in ln for ln in lines)
    assert any(ln.startswith("[run]") and "vgg8_mnist_relu_s1" in ln for ln in lines)
    commands = [shlex.split(ln) for ln in lines if ln.strip().startswith(str(fake_binary))]
    assert len(commands) == 3
    assert all("--epochs" not in c for c in commands), "epochs come from the config when not given"
    assert sum("--resume" in c for c in commands) == 2


def test_sweep_runs_in_parallel_then_skips_completed(tmp_path, fake_binary, config):
    out = tmp_path / "sweep"
    args = ["--config", config, "--activations", "relu,pau", "--seeds", "0,1", "--epochs", "2", "--output", out,
            "--binary", fake_binary, "--jobs", "2", "--threads-per-job", "1"]
    # Each fake run waits until 2 runs have started: with fewer than 2 at a time this fails (exit 3).
    res = run_sweep(*args, env={"FAKE_PARALLEL": "2"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[4/4]" in res.stdout and "FAILED" not in res.stdout
    calls = calls_of(tmp_path)
    assert len(calls) == 4 and all(len(v) == 1 for v in calls.values())
    for act in ("relu", "pau"):
        for seed in (0, 1):
            d = out / f"lenet_fashion-mnist_{act}_s{seed}"
            summary = json.loads((d / "summary.json").read_text())
            assert (summary["activation"], summary["seed"], summary["epochs"], summary["threads"]) == (act, seed, 2, 1)
            log = (d / "log.txt").read_text()
            assert "fake rational_train stdout" in log and "fake rational_train stderr" in log
    manifest = json.loads((out / "sweep.json").read_text())
    assert sorted(manifest["runs"]) == sorted(f"lenet_fashion-mnist_{a}_s{s}" for a in ("relu", "pau") for s in (0, 1))

    # Second call: every run is complete, nothing is started.
    res = run_sweep(*args)
    assert res.returncode == 0, res.stderr
    assert "4 already complete" in res.stdout and "nothing to do" in res.stdout
    assert all(len(v) == 1 for v in calls_of(tmp_path).values())

    # More epochs requested: the runs have checkpoints?  The fake writes none, so they rerun from scratch.
    res = run_sweep(*args[:-4], "--seeds", "0", "--activations", "relu", "--epochs", "3", "--jobs", "1")
    assert res.returncode == 0, res.stderr
    assert len(calls_of(tmp_path)["lenet_fashion-mnist_relu_s0"]) == 2

    # The report reads what the sweep wrote.
    rep = tmp_path / "report"
    assert report.main([str(out), "--output", str(rep), "--no-plots"]) == 0
    rows = parse_table((rep / "results.md").read_text())
    assert rows["pau"]["n"] == "2" and rows["pau"]["test acc. % (mean ± std)"] == "80.50 ± 0.71"


@pytest.mark.parametrize("tee", [False, True])
def test_sweep_log_has_each_line_once(tmp_path, fake_binary, tee):
    out = tmp_path / "sweep"
    res = run_sweep("--model", "lenet", "--dataset", "mnist", "--activations", "relu", "--epochs", "1",
                    "--output", out, "--binary", fake_binary, env={"FAKE_TEE": "1" if tee else "0"})
    assert res.returncode == 0, res.stderr
    log = (out / "lenet_mnist_relu_s0" / "log.txt").read_text()
    assert log.count("fake rational_train stdout lenet_mnist_relu_s0") == 1, log
    assert log.count("fake rational_train stderr lenet_mnist_relu_s0") == 1, log
    assert log.startswith("==== sweep ") and "==== exit status 0" in log


def test_sweep_resumes_run_with_checkpoint(tmp_path, fake_binary):
    out = tmp_path / "sweep"
    d = out / "lenet_mnist_pau_s0"
    d.mkdir(parents=True)
    (d / "checkpoint.pt").write_bytes(b"x")
    res = run_sweep("--model", "lenet", "--dataset", "mnist", "--activations", "pau", "--epochs", "2", "--output",
                    out, "--binary", fake_binary)
    assert res.returncode == 0, res.stderr
    (argv,) = calls_of(tmp_path)["lenet_mnist_pau_s0"]
    assert "--resume" in argv and "--config" not in argv


def test_sweep_failures_exit_nonzero_and_name_the_run(tmp_path, fake_binary, config):
    out = tmp_path / "sweep"
    res = run_sweep("--config", config, "--activations", "relu,bad,nosummary", "--seeds", "0", "--epochs", "1",
                    "--output", out, "--binary", fake_binary, "--jobs", "2")
    assert res.returncode == 1
    assert "2 run(s) FAILED" in res.stderr
    assert str(out / "lenet_fashion-mnist_bad_s0") in res.stderr and "exit status 1" in res.stderr
    assert "error: boom" in res.stderr, "the tail of the failed run's log is shown"
    assert str(out / "lenet_fashion-mnist_nosummary_s0") in res.stderr and "no readable summary.json" in res.stderr
    assert "lenet_fashion-mnist_relu_s0" not in res.stderr
    assert (out / "lenet_fashion-mnist_relu_s0" / "summary.json").is_file()
    assert "[3/3]" in res.stdout


def test_sweep_usage_errors(tmp_path, config, monkeypatch):
    res = run_sweep("--config", config, "--activations", "relu", "--output", tmp_path / "s",
                    "--binary", tmp_path / "missing")
    assert res.returncode == 2 and "missing" in res.stderr
    res = run_sweep("--activations", "relu", "--output", tmp_path / "s", "--binary", sys.executable)
    assert res.returncode == 2 and "--model" in res.stderr
    res = run_sweep("--config", tmp_path / "nope.json", "--activations", "relu", "--output", tmp_path / "s")
    assert res.returncode == 2 and "nope.json" in res.stderr
    res = run_sweep("--config", config, "--activations", "relu", "--seeds", "x", "--output", tmp_path / "s")
    assert res.returncode == 2 and "--seeds" in res.stderr
    # No --binary and none built or on PATH: a clear message (only checked when no real one exists).
    monkeypatch.setattr(sweep, "DEFAULT_BINARIES", (tmp_path / "none",))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(sweep.UsageError, match="rational_train not found"):
        sweep.find_binary(None, required=True)


def test_default_jobs_and_threads(monkeypatch, tmp_path, config, capsys):
    monkeypatch.setattr(sweep, "available_cores", lambda: 8)
    out = tmp_path / "s"
    base = ["--config", str(config), "--activations", "relu,pau,era", "--seeds", "0-3", "--output", str(out),
            "--binary", sys.executable, "--dry-run"]
    for extra, jobs, threads in (([], 8, 1), (["--threads-per-job", "4"], 2, 4), (["--jobs", "2"], 2, 4),
                                 (["--jobs", "3", "--threads-per-job", "2"], 3, 2),
                                 # fewer runs than job slots: the idle cores go to the runs
                                 (["--activations", "relu", "--seeds", "0,1"], 2, 4),
                                 (["--activations", "relu", "--seeds", "0", "--threads-per-job", "2"], 1, 2)):
        assert sweep.main(base + extra) == 0
        text = capsys.readouterr().out
        assert f"{jobs} at a time x {threads} threads" in text, text
        assert f"--threads {threads}" in text
    assert math.isclose(len(sweep.parse_seeds("0-3,5")), 5)


def test_sweep_counts_the_epochs_of_every_pruning_round(tmp_path, fake_binary):
    # A pruning run trains prune_rounds + 1 rounds of --epochs: its summary has 3 x 2 epochs when
    # complete, and a summary with only the first round's 2 is an unfinished run.
    config = tmp_path / "pruning.json"
    config.write_text(json.dumps({"model": "vgg8", "dataset": "mnist", "epochs": 2, "prune_rounds": 2}))
    out = tmp_path / "sweep"
    write_run(out, "vgg8", "mnist", "pau", 0, [0.5] * 6)
    write_run(out, "vgg8", "mnist", "relu", 0, [0.5] * 2)
    (out / "vgg8_mnist_relu_s0" / "checkpoint.pt").write_bytes(b"x")
    res = run_sweep("--config", config, "--activations", "pau,relu", "--output", out, "--binary", fake_binary,
                    "--dry-run")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert any(ln.startswith("[skip]") and "vgg8_mnist_pau_s0" in ln for ln in lines), res.stdout
    assert any(ln.startswith("[resume]") and "vgg8_mnist_relu_s0" in ln for ln in lines), res.stdout
    # The same from a flag after `--`, which overrides the config.
    res = run_sweep("--config", config, "--activations", "pau", "--output", out, "--binary", fake_binary,
                    "--dry-run", "--", "--prune-rounds", "1")
    assert any(ln.startswith("[run]") and "vgg8_mnist_pau_s0" in ln for ln in res.stdout.splitlines()), res.stdout


# ------------------------------------------------------------------------------------------------
# report.py: evidence rule and the figures' axes


def test_report_gives_no_verdict_below_three_seeds(tmp_path):
    # pau is 5 pp above relu, far outside any seed spread: only the number of seeds can withhold "beats".
    relu = [0.80, 0.81, 0.82]
    for seed, acc in enumerate(relu):
        write_run(tmp_path / "a", "lenet", "mnist", "relu", seed, [acc])
    for seed, acc in enumerate([0.86, 0.861]):
        write_run(tmp_path / "a", "lenet", "mnist", "pau", seed, [acc], learnable=True)
    write_run(tmp_path / "dup", "lenet", "mnist", "pau", 1, [0.862], learnable=True)  # seed 1 again: still 2 seeds
    out = tmp_path / "out"
    assert report.main([str(tmp_path / "a"), str(tmp_path / "dup"), "--output", str(out), "--no-plots"]) == 0
    md = (out / "results.md").read_text()
    rows = parse_table(md)
    diff = 100 * (np.mean([0.86, 0.861, 0.862]) - np.mean(relu))
    assert rows["pau"]["n"] == "3"
    assert rows["pau"]["vs. best fixed"] == (f"n too small ({diff:+.2f} pp vs. relu; a verdict needs ≥ 3 seeds "
                                             "in both rows)")
    assert "beats" not in rows["pau"]["vs. best fixed"]
    assert "*n too small*" in md
    write_run(tmp_path / "b", "lenet", "mnist", "pau", 2, [0.862], learnable=True)  # a third seed
    assert report.main([str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(out), "--no-plots"]) == 0
    rows = parse_table((out / "results.md").read_text())
    assert rows["pau"]["vs. best fixed"] == f"beats relu ({100 * (np.mean([0.86, 0.861, 0.862]) - 0.81):+.2f} pp)"


def figures_of(monkeypatch, draw, *args):
    """The matplotlib figures `draw(plt, ...)` makes (kept open for inspection)."""
    plt = report.import_pyplot()
    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    draw(plt, *args)
    return kept


def test_report_one_epoch_accuracy_axes(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    for seed in range(2):
        write_run(tmp_path, "lenet", "mnist", "relu", seed, [0.80 + 0.01 * seed])
        write_run(tmp_path, "lenet", "mnist", "pau", seed, [0.85 + 0.02 * seed], learnable=True)
    runs, _ = report.collect([tmp_path])
    _, groups = report.build_table(report.group_runs(runs))
    (fig,) = figures_of(monkeypatch, report.plot_accuracy_curves, groups, tmp_path / "acc.png")
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert (lo, hi) == (0.5, 1.5)
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks == [1.0], "one epoch: one whole-number tick"
    # Markers with error bars (a line through one point would be a bare dot), one per activation, both
    # within the epoch's half-width, with the seeds' std as the bar.
    assert len(ax.containers) == 2
    for container, accs in zip(ax.containers, ([85.0, 87.0], [80.0, 81.0])):  # table order: pau, relu
        line = container.lines[0]
        assert line.get_marker() in ("o", "s") and line.get_markersize() >= 6
        assert abs(line.get_xdata()[0] - 1) < 0.5
        assert line.get_ydata()[0] == pytest.approx(np.mean(accs))
        segment = container.lines[2][0].get_segments()[0]
        assert segment[1][1] - segment[0][1] == pytest.approx(2 * np.std(accs, ddof=1))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "(circle: learnable)" in legend and "(square: fixed)" in legend

    for seed in range(2):  # a second epoch: lines again, still whole-number ticks
        write_run(tmp_path / "two", "lenet", "mnist", "relu", seed, [0.7, 0.8])
    runs, _ = report.collect([tmp_path / "two"])
    _, groups = report.build_table(report.group_runs(runs))
    (fig,) = figures_of(monkeypatch, report.plot_accuracy_curves, groups, tmp_path / "acc2.png")
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert all(t == int(t) for t in ax.get_xticks() if lo <= t <= hi)
    assert list(ax.get_lines()[0].get_xdata()) == [1, 2]


def test_report_activation_inits_and_input_histograms(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.colors import to_rgba

    shared = write_run(tmp_path, "lenet", "mnist", "pau", 0, [0.9], learnable=True)  # both slots: one init
    apart = write_run(tmp_path, "lenet", "mnist", "era", 0, [0.9], learnable=True)
    summary = json.loads((apart / "summary.json").read_text())
    x = np.array(summary["activation_curves"][0]["x"])
    summary["activation_curves"][1]["y_init"] = np.tanh(x).tolist()  # slot act2 starts elsewhere
    edges = np.linspace(-2, 2, 9)  # bins 0.5 wide
    counts = [0, 1, 4, 10, 12, 5, 2, 1]
    summary["activation_curves"][0]["input_histogram"] = {"edges": edges.tolist(), "counts": counts}
    (apart / "summary.json").write_text(json.dumps(summary))
    runs, _ = report.collect([shared, apart])
    _, groups = report.build_table(report.group_runs(runs))
    (fig,) = figures_of(monkeypatch, report.plot_activations, groups, tmp_path / "acts.png")
    panels = {ax.get_title().split(": ")[1].split("\n")[0]: ax for ax in fig.axes if ax.get_title()}

    dashed = [line for line in panels["pau"].get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and to_rgba(dashed[0].get_color()) == to_rgba("black")
    assert "initial (every slot)" in [t.get_text() for t in panels["pau"].get_legend().get_texts()]

    era = panels["era"]
    solid = {line.get_label(): line for line in era.get_lines() if line.get_label() in ("act1", "act2")}
    dashed = [line for line in era.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 2
    assert [to_rgba(d.get_color()) for d in dashed] == [to_rgba(solid[s].get_color()) for s in ("act1", "act2")]
    np.testing.assert_allclose(dashed[1].get_ydata(), np.tanh(x))
    # The input density: counts / total / bin width, on a second y axis sharing the panel's x.
    twins = [ax for ax in fig.axes if ax is not era and ax.bbox.bounds == era.bbox.bounds]
    assert len(twins) == 1
    (stairs,) = twins[0].patches
    np.testing.assert_allclose(stairs.get_data().values, np.array(counts) / sum(counts) / 0.5)
    np.testing.assert_allclose(stairs.get_data().edges, edges)
    assert "inputs (density)" in [t.get_text() for t in era.get_legend().get_texts()]


# ------------------------------------------------------------------------------------------------
# sweep.py: each family's own init


@pytest.fixture
def pau_preset(tmp_path):
    """Like configs/lenet_fashion_mnist.json: a PAU config that names PAU's init (2 epochs: what the fake
    binary trains when no --epochs is passed)."""
    path = tmp_path / "pau_preset.json"
    path.write_text(json.dumps({"model": "lenet", "dataset": "fashion-mnist", "epochs": 2, "activation": "pau",
                                "activation_options": {"degrees": [5, 4], "init": "leaky_relu"}}))
    return path


def dry_run_commands(res, binary) -> dict[str, list[str]]:
    commands = [shlex.split(ln.strip()) for ln in res.stdout.splitlines() if ln.strip().startswith(str(binary))]
    return {c[c.index("--activation") + 1]: c for c in commands}


def test_sweep_presets_start_each_family_from_its_own_init(tmp_path, fake_binary, pau_preset):
    out = tmp_path / "sweep"
    acts = "relu,pau,rpau,hp1,era,pwlu,prelu"
    res = run_sweep("--config", pau_preset, "--activations", acts, "--output", out, "--binary", fake_binary,
                    "--dry-run")
    assert res.returncode == 0, res.stderr
    commands = dry_run_commands(res, fake_binary)
    for act, cmd in commands.items():
        has_reset = cmd[cmd.index("--seed") + 2:cmd.index("--seed") + 4] == ["--act-init", ""]
        assert has_reset == (act in ("era", "pwlu")), (act, cmd)  # the rationals keep the preset's init
        assert cmd.count("--act-init") == has_reset
    assert "era, pwlu start from their family's default init" in res.stdout

    # The user names an init: it holds for every run, nothing is reset.
    res = run_sweep("--config", pau_preset, "--activations", acts, "--output", out, "--binary", fake_binary,
                    "--dry-run", "--", "--act-init", "tanh")
    for act, cmd in dry_run_commands(res, fake_binary).items():
        assert cmd.count("--act-init") == 1 and cmd[-2:] == ["--act-init", "tanh"], (act, cmd)

    # An ERA preset: its init is ERA's; the rationals start from theirs.
    era_preset = tmp_path / "era_preset.json"
    era_preset.write_text(json.dumps({**json.loads(pau_preset.read_text()), "activation": "era",
                                      "activation_options": {"init": "tanh"}}))
    res = run_sweep("--config", era_preset, "--activations", "pau,era", "--output", out, "--binary", fake_binary,
                    "--dry-run")
    commands = dry_run_commands(res, fake_binary)
    assert "--act-init" in commands["pau"] and "--act-init" not in commands["era"]

    # The empty value reaches the binary as an argument of its own.
    res = run_sweep("--config", pau_preset, "--activations", "era", "--output", out, "--binary", fake_binary)
    assert res.returncode == 0, res.stderr
    (argv,) = calls_of(tmp_path)["lenet_fashion-mnist_era_s0"]
    assert argv[argv.index("--act-init") + 1] == ""
