#!/usr/bin/env python3
"""Run `rational_train` over activations x seeds, one process per run, several at a time.

Each (activation, seed) trains into SWEEP_DIR/<model>_<dataset>_<activation>_s<seed>/ (the run-directory
format of docs/training.md). Re-running the same command resumes the sweep: a run whose summary.json
already holds the requested epochs is skipped, and a run with a checkpoint but no (or a shorter) summary
continues with --resume. Each run's stdout/stderr is appended to its log.txt.

    python3 scripts/sweep.py --config configs/lenet_fashion_mnist.json \\
        --activations relu,leaky_relu,swish,pau,era --seeds 0,1,2 --epochs 3 --output runs/sweep_lenet
    python3 scripts/sweep.py ... --dry-run                     # print the commands, run nothing
    python3 scripts/sweep.py ... -- --train-subset 2000        # everything after -- goes to every run
    python3 scripts/sweep.py ... -- --act-init tanh             # one init for every run

A config's activation_options.init is the init of the config's own activation family (the rationals, era or
pwlu); runs of another family start from that family's default (--act-init '') unless --act-init follows `--`.

Exit status: 0 when every run is complete, 1 when any run failed (they are listed), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Where the CMake builds put the binary: the main build first, then the development build.
DEFAULT_BINARIES = (REPO_ROOT / "build" / "cmake" / "rational_train", REPO_ROOT / "build" / "train" / "rational_train")
KNOWN_ACTIVATIONS = (
    "relu", "relu6", "leaky_relu", "rrelu", "elu", "celu", "swish", "silu", "gelu", "prelu",
    "maxout", "mixture", "apl", "srelu", "pau", "rpau", "opau", "hp1", "hp2", "era", "pwlu",
)
MANIFEST = "sweep.json"
# Activations whose activation_options.init means the same thing (a function the activation starts as, each
# with its own default: leaky_relu for the rationals, swish for era, relu for pwlu; see --act-init).
INIT_FAMILIES = {"pau": "rational", "rational": "rational", "rpau": "rational", "opau": "rational",
                 "hp1": "rational", "hp2": "rational", "era": "era", "pwlu": "pwlu"}


class UsageError(Exception):
    """Bad arguments or environment: exit status 2 with the message."""


@dataclass
class Run:
    activation: str
    seed: int
    directory: Path
    command: list[str] = field(default_factory=list)
    action: str = "run"  # run | resume | skip
    reason: str = ""

    @property
    def name(self) -> str:
        return self.directory.name


def available_cores() -> int:
    # Affinity, not os.cpu_count(): in a container or under taskset only these cores are ours.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def split_extra(argv: list[str]) -> tuple[list[str], list[str]]:
    """(sweep arguments, arguments after the first `--` that go to every rational_train run)."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def parse_list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UsageError(f"--{what}: empty list")
    return list(dict.fromkeys(items))  # drop duplicates, keep order: a duplicate would race on one directory


def parse_seeds(text: str) -> list[int]:
    seeds = []
    for item in parse_list(text, "seeds"):
        # "0-4" is a range, as in most sweep tools.
        lo, sep, hi = item.partition("-")
        try:
            if sep and lo:
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(item))
        except ValueError:
            raise UsageError(f"--seeds: {item!r} is not an integer or a range like 0-4") from None
    return list(dict.fromkeys(seeds))


def config_value(config: dict, key: str):
    """config[key], also as config[key]["name"] or one level down (e.g. {"training": {"epochs": 3}})."""
    value = config.get(key)
    if isinstance(value, dict):
        value = value.get("name")
    if value is not None:
        return value
    for sub in config.values():
        if isinstance(sub, dict) and key in sub and not isinstance(sub[key], dict):
            return sub[key]
    return None


def load_config(path: str | None) -> dict:
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config: no such file: {path}")
    try:
        config = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise UsageError(f"--config: {path} is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise UsageError(f"--config: {path} must hold a JSON object")
    return config


def find_binary(requested: str | None, required: bool) -> str:
    if requested is not None:
        p = Path(requested)
        if p.is_file() and os.access(p, os.X_OK):
            # A bare name would be looked up on PATH by exec, not in the current directory.
            return requested if os.sep in requested else os.path.join(os.curdir, requested)
        found = shutil.which(requested)
        if found:
            return found
        raise UsageError(f"--binary: {requested} is not an executable file")
    for candidate in DEFAULT_BINARIES:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("rational_train")
    if found:
        return found
    searched = ", ".join(str(c) for c in DEFAULT_BINARIES)
    message = (f"rational_train not found (looked at {searched} and PATH); build it with "
               f"`cmake --build build/cmake --target rational_train` or pass --binary PATH")
    if required:
        raise UsageError(message)
    print(f"note: {message}; showing commands with `rational_train`", file=sys.stderr)
    return "rational_train"


def read_summary(directory: Path) -> dict | None:
    """The run's summary.json, or None when missing or unreadable (a crash mid-write of a non-atomic writer)."""
    try:
        summary = json.loads((directory / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def pruning_rounds(config: dict, extra: list[str]) -> int:
    """--prune-rounds of the runs (the config's prune_rounds, or a flag after `--`): a pruning run
    trains R + 1 rounds of --epochs, and its summary counts them all. 0 when absent or malformed
    (the binary reports a bad value itself)."""
    rounds = config_value(config, "prune_rounds")
    for i, arg in enumerate(extra):
        if arg == "--prune-rounds" and i + 1 < len(extra):
            rounds = extra[i + 1]
        elif arg.startswith("--prune-rounds="):
            rounds = arg.split("=", 1)[1]
    try:
        return max(0, int(rounds)) if rounds is not None else 0
    except (TypeError, ValueError):
        return 0


def plan_run(run: Run, epochs: int | None) -> None:
    """Decide run / resume / skip from what is already in the run directory."""
    summary = read_summary(run.directory)
    has_checkpoint = (run.directory / "checkpoint.pt").is_file()
    done = summary.get("epochs") if summary else None
    if summary is not None and (epochs is None or done == epochs):
        run.action, run.reason = "skip", f"complete ({done} epochs)"
    elif has_checkpoint and (summary is None or (isinstance(done, int) and epochs is not None and done < epochs)):
        run.action = "resume"
        run.reason = "checkpoint without summary" if summary is None else f"summary has {done} of {epochs} epochs"
    else:
        run.action = "run"
        run.reason = "new" if summary is None else f"summary has {done} epochs, {epochs} requested"


def config_init(config: dict) -> str | None:
    """The init the config names in activation_options (None when it names none)."""
    options = config.get("activation_options")
    init = options.get("init") if isinstance(options, dict) else None
    return init if isinstance(init, str) and init else None


def names_init(extra: list[str]) -> bool:
    """Whether the user set --act-init after `--` (then it holds for every run, as the user asked)."""
    return any(arg == "--act-init" or arg.startswith("--act-init=") for arg in extra)


def uses_family_default_init(config: dict, activation: str, extra: list[str]) -> bool:
    """Whether `activation`'s run must be told to start from its family's default init (--act-init ''): the
    config names an init for its own activation's family (a preset's PAU from leaky_relu), and `activation`
    belongs to another family (ERA would start as leaky_relu instead of its default, swish)."""
    family = INIT_FAMILIES.get(activation)
    if family is None or config_init(config) is None or names_init(extra):
        return False
    return family != INIT_FAMILIES.get(str(config_value(config, "activation")))


def build_command(binary: str, args, model: str, dataset: str, run: Run, threads: int, extra: list[str],
                  family_default_init: bool = False) -> list[str]:
    cmd = [binary]
    if args.config:
        cmd += ["--config", args.config]
    # Model and dataset always explicit, so the directory name and the run cannot disagree.
    cmd += ["--model", model, "--dataset", dataset, "--activation", run.activation, "--seed", str(run.seed)]
    if family_default_init:
        cmd += ["--act-init", ""]  # empty: the family's own default, overriding the config's
    if args.epochs is not None:
        cmd += ["--epochs", str(args.epochs)]
    cmd += ["--output", str(run.directory), "--threads", str(threads)]
    if run.action == "resume":
        cmd.append("--resume")
    return cmd + extra


def tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return ""
    return "\n".join("      " + line for line in text[-lines:])


def already_logged(log_path: Path, offset: int, stdout: str) -> bool:
    """Whether every stdout line is already in log.txt after `offset`.

    rational_train tees its stdout into DIR/log.txt; writing it again would double every line. A binary
    that does not (the contract makes log.txt optional) gets its stdout appended after it exits.
    """
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if not lines:
        return True
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            logged = set(f.read().decode(errors="replace").splitlines())
    except OSError:
        return False
    return all(ln in logged for ln in lines)


class Runner:
    """Runs the planned commands, `jobs` at a time; kills its own children on Ctrl-C."""

    def __init__(self, threads: int):
        self.threads = threads
        self.lock = threading.Lock()
        self.processes: set[subprocess.Popen] = set()
        self.stopping = False

    def execute(self, run: Run, epochs: int | None) -> tuple[bool, str, float]:
        run.directory.mkdir(parents=True, exist_ok=True)
        if run.action == "run" or run.action == "resume":
            # A summary left by an earlier, different run must not pass for this run's result if it fails.
            stale = run.directory / "summary.json"
            if stale.exists():
                stale.replace(run.directory / "summary.previous.json")
        env = dict(os.environ)
        # Each run gets its share of the cores; without this every OpenMP/MKL pool would take all of them.
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(self.threads)
        start = time.monotonic()
        log_path = run.directory / "log.txt"
        # Appended, not truncated: a resumed run keeps the log of its first part.
        with open(log_path, "a", buffering=1) as log:
            log.write(f"==== sweep {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(run.command)}\n")
            log.flush()
            offset = log_path.stat().st_size
            with self.lock:
                if self.stopping:
                    return False, "not started (interrupted)", 0.0
                try:
                    # stderr (errors, progress) straight into the log; stdout through a pipe, because
                    # rational_train already copies its stdout into log.txt itself (see below).
                    proc = subprocess.Popen(run.command, stdout=subprocess.PIPE, stderr=log, env=env,
                                            stdin=subprocess.DEVNULL)
                except OSError as e:
                    log.write(f"==== could not start: {e}\n")
                    return False, f"could not start: {e}", 0.0
                self.processes.add(proc)
            stdout, _ = proc.communicate()
            rc = proc.returncode
            with self.lock:
                self.processes.discard(proc)
            seconds = time.monotonic() - start
            text = stdout.decode(errors="replace")
            if not already_logged(log_path, offset, text):
                log.write("---- stdout ----\n" + text + ("" if text.endswith("\n") else "\n"))
            log.write(f"==== exit status {rc} after {seconds:.1f} s\n")
        if rc != 0:
            return False, f"exit status {rc}", seconds
        summary = read_summary(run.directory)
        if summary is None:
            return False, "exited 0 but wrote no readable summary.json", seconds
        if epochs is not None and summary.get("epochs") != epochs:
            return False, f"summary.json has {summary.get('epochs')} epochs, {epochs} requested", seconds
        acc = summary.get("test_accuracy")
        detail = f"test accuracy {100 * acc:.2f}%" if isinstance(acc, (int, float)) else "done"
        return True, detail, seconds

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            for proc in self.processes:
                proc.terminate()


def write_manifest(output: Path, args, model: str, dataset: str, runs: list[Run], extra: list[str]) -> None:
    """SWEEP_DIR/sweep.json: what was asked for, so report.py can list runs that never started."""
    names = [r.name for r in runs]
    try:  # keep the runs of earlier calls with other activations/seeds into the same directory
        earlier = json.loads((output / MANIFEST).read_text()).get("runs", [])
        names = [n for n in earlier if isinstance(n, str) and n not in names] + names
    except (OSError, ValueError, AttributeError):
        pass
    manifest = {
        "config": args.config, "model": model, "dataset": dataset, "epochs": args.epochs,
        "activations": sorted({r.activation for r in runs}), "seeds": sorted({r.seed for r in runs}),
        "extra_args": extra, "runs": names,
    }
    tmp = output / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(output / MANIFEST)


def parse_args(argv: list[str]):
    own, extra = split_extra(argv)
    parser = argparse.ArgumentParser(
        prog="sweep.py", description=__doc__.split("\n\n")[0],
        epilog="Arguments after `--` are passed unchanged to every rational_train run "
               "(e.g. -- --device cuda --train-subset 5000).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON config passed to every run; model, dataset and epochs are read from it")
    parser.add_argument("--model", help="overrides the config's model (lenet, vgg8, mobilenetv2)")
    parser.add_argument("--dataset", help="overrides the config's dataset (mnist, fashion-mnist, cifar10)")
    parser.add_argument("--activations", required=True, help="comma-separated activation names, e.g. relu,pau,era")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds or ranges, e.g. 0,1,2 or 0-4 (default 0)")
    parser.add_argument("--epochs", type=int, help="epochs per run (default: the config's)")
    parser.add_argument("--output", required=True, help="sweep directory; runs go to <model>_<dataset>_<act>_s<seed>/")
    parser.add_argument("--jobs", type=int, help="runs at a time (default: cores // threads-per-job, at least 1)")
    parser.add_argument("--threads-per-job", type=int,
                        help="--threads of each run (default: cores // jobs when --jobs is given, else 1)")
    parser.add_argument("--binary", help="rational_train to run (default: build/cmake/rational_train, "
                                         "build/train/rational_train, then PATH)")
    parser.add_argument("--dry-run", action="store_true", help="print what would run, start nothing")
    args = parser.parse_args(own)
    for name in ("jobs", "threads_per_job", "epochs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    return args, extra


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, extra = parse_args(argv)
    try:
        return sweep(args, extra)
    except UsageError as e:
        print(f"sweep.py: error: {e}", file=sys.stderr)
        return 2


def sweep(args, extra: list[str]) -> int:
    config = load_config(args.config)
    model = args.model or config_value(config, "model")
    dataset = args.dataset or config_value(config, "dataset")
    if not isinstance(model, str) or not model:
        raise UsageError("no model: pass --model or a --config with a \"model\" entry")
    if not isinstance(dataset, str) or not dataset:
        raise UsageError("no dataset: pass --dataset or a --config with a \"dataset\" entry")
    epochs = args.epochs
    if epochs is None:
        # Only used to decide which runs are complete; the binary reads epochs from its config itself.
        config_epochs = config_value(config, "epochs")
        epochs = config_epochs if isinstance(config_epochs, int) else None
    if epochs is not None:
        epochs *= pruning_rounds(config, extra) + 1  # what a complete run's summary.json counts
    activations = parse_list(args.activations, "activations")
    seeds = parse_seeds(args.seeds)
    unknown = [a for a in activations if a not in KNOWN_ACTIVATIONS]
    if unknown:
        # The binary is the authority on names; this only catches typos before a long sweep starts.
        print(f"warning: activation(s) {', '.join(unknown)} not in the known list "
              f"({', '.join(KNOWN_ACTIVATIONS)}); passing them on anyway", file=sys.stderr)

    cores = available_cores()
    if args.jobs is None and args.threads_per_job is None:
        threads, jobs = 1, cores  # small models scale better across processes than across threads
    elif args.jobs is None:
        threads, jobs = args.threads_per_job, max(1, cores // args.threads_per_job)
    elif args.threads_per_job is None:
        jobs, threads = args.jobs, max(1, cores // args.jobs)
    else:
        jobs, threads = args.jobs, args.threads_per_job

    binary = find_binary(args.binary, required=not args.dry_run)
    output = Path(args.output)
    runs = [Run(a, s, output / f"{model}_{dataset}_{a}_s{s}") for a in activations for s in seeds]
    for run in runs:
        plan_run(run, epochs)
    todo = [r for r in runs if r.action != "skip"]
    if todo and len(todo) < jobs:
        # Fewer runs than job slots: give the idle cores to the runs unless the thread count was set.
        jobs = len(todo)
        if args.threads_per_job is None:
            threads = max(1, cores // jobs)
    for run in runs:
        run.command = build_command(binary, args, model, dataset, run, threads, extra,
                                    uses_family_default_init(config, run.activation, extra))
    own_default = [a for a in activations if uses_family_default_init(config, a, extra)]
    if own_default:
        print(f"note: the config's init {config_init(config)!r} is for {config_value(config, 'activation')}; "
              f"{', '.join(own_default)} start from their family's default init instead "
              f"(pass -- --act-init NAME to set one for every run)")

    print(f"sweep: {len(runs)} runs ({len(activations)} activations x {len(seeds)} seeds) of {model} on {dataset}, "
          f"{len(runs) - len(todo)} already complete; {jobs} at a time x {threads} threads; output {output}")
    if args.dry_run:
        for run in runs:
            print(f"[{run.action}] {run.directory}  ({run.reason})")
            if run.action != "skip":
                print(f"    {shlex.join(run.command)}")
        return 0

    output.mkdir(parents=True, exist_ok=True)
    write_manifest(output, args, model, dataset, runs, extra)
    if not todo:
        print("sweep: nothing to do")
        return 0

    runner = Runner(threads)
    failures: list[tuple[Run, str]] = []
    finished = 0
    t0 = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=jobs)
    pending = {}
    try:
        for run in todo:
            pending[pool.submit(runner.execute, run, epochs)] = run
        while pending:
            done, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                run = pending.pop(future)
                try:
                    ok, detail, seconds = future.result()
                except Exception as e:  # noqa: BLE001  one broken run must not end the sweep
                    ok, detail, seconds = False, f"sweep error: {e!r}", 0.0
                finished += 1
                status = "ok" if ok else "FAILED"
                print(f"[{finished}/{len(todo)}] {status} {run.name} ({'resumed, ' if run.action == 'resume' else ''}"
                      f"{detail}, {seconds:.1f} s) failures so far: {len(failures) + (not ok)}", flush=True)
                if not ok:
                    failures.append((run, detail))
    except KeyboardInterrupt:
        print("\nsweep: interrupted; stopping the running jobs (re-run the same command to resume)", file=sys.stderr)
        runner.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        return 130
    pool.shutdown(wait=True)

    elapsed = time.monotonic() - t0
    print(f"sweep: {len(todo) - len(failures)} of {len(todo)} runs succeeded in {elapsed:.1f} s "
          f"({len(runs) - len(todo)} skipped as complete)")
    if failures:
        print(f"sweep: {len(failures)} run(s) FAILED:", file=sys.stderr)
        for run, detail in failures:
            print(f"  {run.directory}: {detail}; log: {run.directory / 'log.txt'}", file=sys.stderr)
            last = tail(run.directory / "log.txt")
            if last:
                print(last, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
