#!/usr/bin/env bash
# Command-line behaviour of rational_train: exit codes, error messages, run-directory output.
# usage: cli_test.sh PATH/TO/rational_train WORK_DIR
set -u
BIN="$1"
WORK="$2"
rm -rf "$WORK" && mkdir -p "$WORK"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$BIN" --help > "$WORK/help.txt" || fail "--help exited $?"
grep -q -- "--activation" "$WORK/help.txt" || fail "--help does not list --activation"

"$BIN" --no-such-flag > /dev/null 2>&1
rc=$?
[ "$rc" = 2 ] || fail "an unknown flag exited $rc, expected 2"

missing="$WORK/no/such/data-dir"
"$BIN" --dataset mnist --data-dir "$missing" --epochs 1 --output "$WORK/missing" > /dev/null 2> "$WORK/missing.err"
rc=$?
[ "$rc" != 0 ] || fail "a missing data directory exited 0"
[ "$rc" -lt 128 ] || fail "a missing data directory crashed (exit $rc)"
grep -q "error: .*$missing" "$WORK/missing.err" || fail "message does not name $missing: $(cat "$WORK/missing.err")"

"$BIN" --activation nope --synthetic --output "$WORK/bad" > /dev/null 2> "$WORK/bad.err"
rc=$?
[ "$rc" = 1 ] || fail "an unknown activation exited $rc, expected 1"
grep -q "pau" "$WORK/bad.err" || fail "unknown activation message does not list the names"

"$BIN" --synthetic --epochs 1 --synthetic-train-size 256 --synthetic-test-size 64 --output "$WORK/run" \
  > "$WORK/run.out" 2>&1 || fail "--synthetic --epochs 1 exited $?: $(tail -5 "$WORK/run.out")"
python3 - "$WORK/run" <<'PY' || fail "summary.json / metrics.csv invalid"
import json, sys, pathlib
d = pathlib.Path(sys.argv[1])
s = json.loads((d / "summary.json").read_text())
for k in ["model", "dataset", "activation", "activation_options", "seed", "epochs", "test_accuracy",
          "best_test_accuracy", "best_epoch", "final_train_loss", "seconds", "device", "threads", "config",
          "activation_parameters", "activation_curves"]:
    assert k in s, k
assert 0.0 <= s["test_accuracy"] <= 1.0 and s["epochs"] == 1 and s["best_epoch"] == 1
assert s["activation"] == "pau" and s["device"] in ("cpu", "cuda")
c = s["activation_curves"][0]
assert len(c["x"]) == len(c["y"]) == len(c["y_init"]) == 201 and c["x"][0] == -4.0 and c["x"][-1] == 4.0
lines = (d / "metrics.csv").read_text().splitlines()
assert lines[0] == "epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,seconds,images_per_second", lines[0]
assert len(lines) == 2 and lines[1].startswith("1,")
assert (d / "checkpoint.pt").is_file() and not (d / "checkpoint.pt.tmp").exists()
PY
echo "cli_test: all passed"
