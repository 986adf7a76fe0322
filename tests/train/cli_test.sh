#!/usr/bin/env bash
# Command-line behaviour of rational_train: exit codes, error messages, run-directory output,
# validation of every class of bad value, refused resumes, damaged checkpoints and failed writes.
# usage: cli_test.sh PATH/TO/rational_train WORK_DIR
set -u
BIN="$1"
WORK="$2"
rm -rf "$WORK" && mkdir -p "$WORK"
fail() { echo "FAIL: $*" >&2; exit 1; }
# Small generated data, one thread: every run here takes about a second.
SMALL=(--synthetic --synthetic-train-size 128 --synthetic-test-size 32 --threads 1 --workers 0 --no-progress)

# expect_error NAME RC 'REGEX' ARGS...: the run exits RC, stderr matches REGEX (grep -E), and no
# torch internal assert leaks through.
expect_error() {
  local name="$1" want="$2" regex="$3"
  shift 3
  "$BIN" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err"
  local rc=$?
  [ "$rc" = "$want" ] || fail "$name: exited $rc, expected $want: $* :: $(tail -3 "$WORK/$name.err")"
  # Matched against the whole message as one line (resume lists one setting per line).
  tr '\n' ' ' < "$WORK/$name.err" | grep -Eq -- "$regex" || fail "$name: stderr does not match '$regex': $(cat "$WORK/$name.err")"
  if grep -q "INTERNAL ASSERT" "$WORK/$name.err"; then fail "$name: torch internal assert: $(cat "$WORK/$name.err")"; fi
}

"$BIN" --help > "$WORK/help.txt" || fail "--help exited $?"
grep -q -- "--activation" "$WORK/help.txt" || fail "--help does not list --activation"
# Defaults are shown (CLI11 prints them as --flag TYPE=DEFAULT; flags say "default: on/off").
grep -Eq -- "--lr FLOAT=0\.002" "$WORK/help.txt" || fail "--help does not show the default of --lr"
grep -Eq -- "--act-degrees M,N=5,4" "$WORK/help.txt" || fail "--help does not show the default of --act-degrees"
grep -Eq -- "--seed UINT=0" "$WORK/help.txt" || fail "--help does not show the default of --seed"
grep -Eq -- "--hflip.*default: off" "$WORK/help.txt" || fail "--help does not show the default of --hflip"
# Every option but --help / --version shows its default: "--flag TYPE=VALUE" (also '' and null) or,
# for on/off flags, "(default: on|off)" in its help text (which may wrap onto the next line).
undocumented=$(awk '/^  -/ { if (opt != "" && !ok) print opt; opt = $1; ok = ($0 ~ /[A-Z,]=[^ ]/ || $0 ~ /default: (on|off)/) ; next }
                    /^   / { if ($0 ~ /default: (on|off)/) ok = 1 }
                    END { if (opt != "" && !ok) print opt }' "$WORK/help.txt" | grep -v -E -- '^-h,--help$|^--version$' || true)
[ -z "$undocumented" ] || fail "--help shows no default for: $undocumented"
grep -Eq -- "--data-dir TEXT=''" "$WORK/help.txt" || fail "--help does not show the empty default of --data-dir"
grep -Eq -- "--act-lr FLOAT=null" "$WORK/help.txt" || fail "--help does not show the null default of --act-lr"

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

# ---- every class of bad value: exit 1, 'error:' naming the flag, nothing trained -------------
bad() {  # bad NAME 'REGEX' ARGS...
  local name="$1" regex="$2"
  shift 2
  expect_error "flag_$name" 1 "error: .*$regex" "${SMALL[@]}" --epochs 1 --output "$WORK/flag_$name" "$@"
  [ ! -e "$WORK/flag_$name/checkpoint.pt" ] || fail "flag_$name: trained anyway"
}
bad seed_negative '--seed' --seed -1
bad seed_overflow '--seed' --seed 99999999999999999999999
bad seed_fraction '--seed' --seed 1.5
bad subset_negative '--train-subset' --train-subset -5
bad test_subset_negative '--test-subset' --test-subset -1
bad act_lr_negative '--act-lr' --act-lr -1
bad weight_decay_negative '--weight-decay' --weight-decay -1
bad act_weight_decay_nan '--act-weight-decay' --act-weight-decay nan
bad clip_nan '--clip-grad-norm' --clip-grad-norm nan
bad clip_negative '--clip-grad-norm' --clip-grad-norm -1
bad gamma_nan '--lr-gamma' --lr-gamma nan
bad momentum_nan '--momentum' --momentum nan --optimizer sgd
bad lr_inf '--lr' --lr inf
bad lr_zero '--lr' --lr 0
bad lr_huge '--lr' --lr 1e300
bad lr_text '--lr' --lr fast
bad epochs_zero '--epochs' --epochs 0
bad epochs_fraction '--epochs' --epochs 1.5
bad batch_fraction '--batch-size' --batch-size 2.5
bad threads_negative '--threads' --threads -1
bad workers_huge '--workers' --workers 100000
bad rotation_nan '--rotation' --rotation nan
bad std_zero '--std' --std 0
bad mean_count '--mean' --mean 0.1,0.2
bad mean_text '--mean' --mean 0.1,x
bad degrees_one '--act-degrees' --act-degrees 5
bad degrees_big '--act-degrees' --act-degrees 40,4
bad degrees_negative '--act-degrees' --act-degrees -1,4
bad groups_zero '--act-groups' --act-groups 0
bad groups_nondivisor '--act-groups' --act-groups 5
bad noise_negative '--act-noise' --act-noise -0.5 --activation rpau
bad version '--act-version' --act-version Z
bad basis '--act-basis' --act-basis fourier
bad init '--act-init' --act-init no_such_function
bad nesterov_no_momentum '--nesterov' --optimizer sgd --momentum 0 --nesterov
bad synthetic_size '--synthetic-train-size' --synthetic-train-size 0
bad prune_fraction_one '--prune-fraction: must be in \(0, 1\)' --prune-fraction 1
bad prune_fraction_zero '--prune-fraction' --prune-fraction 0
bad prune_rounds_negative '--prune-rounds' --prune-rounds -1
grep -q "1 or 1" "$WORK/flag_std_zero.err" && fail "--std message still says '1 or 1 values'"

# Config values: the same checks, naming the key; exactly the documented keys.
config_bad() {  # config_bad NAME 'REGEX' 'JSON'
  printf '%s\n' "$3" > "$WORK/config_$1.json"
  expect_error "config_$1" 1 "error: .*$2" "${SMALL[@]}" --config "$WORK/config_$1.json" --output "$WORK/config_$1"
  [ ! -e "$WORK/config_$1/checkpoint.pt" ] || fail "config_$1: trained anyway"
}
expect_error config_missing 1 "error: .*no-such-config.json.*No such file" "${SMALL[@]}" --config "$WORK/no-such-config.json" --output "$WORK/config_missing"
config_bad epochs_fraction 'epochs' '{"epochs": 1.5}'
config_bad epochs_huge 'epochs' '{"epochs": 1e30}'
config_bad seed_negative 'seed' '{"seed": -1}'
config_bad lr_string 'lr' '{"lr": "fast"}'
config_bad bool_number 'hflip' '{"hflip": 1}'
config_bad unknown_key "act_degrees" '{"act_degrees": [3, 2]}'
config_bad unknown_nested "activation_options.degree" '{"activation_options": {"degree": [3, 2]}}'
config_bad degrees_fraction 'degrees' '{"activation_options": {"degrees": [5.5, 4]}}'
config_bad mean_string 'mean' '{"mean": ["0.1"]}'
config_bad not_object 'object' '[1, 2]'

# ---- a good run, then its run directory ------------------------------------------------------
"$BIN" "${SMALL[@]}" --epochs 1 --output "$WORK/run" > "$WORK/run.out" 2>&1 \
  || fail "--synthetic --epochs 1 exited $?: $(tail -5 "$WORK/run.out")"
python3 - "$WORK/run" <<'PY' || fail "summary.json / metrics.csv / checkpoint.pt invalid"
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
# The summary's config is itself a valid config file (exactly the documented keys).
(d / "config_back.json").write_text(json.dumps(s["config"]))
PY
"$BIN" --config "$WORK/run/config_back.json" --epochs 1 --output "$WORK/run_again" --no-progress > "$WORK/again.out" 2>&1 \
  || fail "a summary's config is not accepted as --config: $(tail -3 "$WORK/again.out")"

# ---- resume: refused with other model-defining settings, allowed with harmless ones ------------
base=(--output "$WORK/run" --resume --epochs 2)
expect_error resume_degrees 1 "error: .*--act-degrees.*5,4.*3,2" "${SMALL[@]}" "${base[@]}" --act-degrees 3,2
expect_error resume_groups 1 "--act-groups.*1.*-1" "${SMALL[@]}" "${base[@]}" --act-groups -1
expect_error resume_optimizer 1 "--optimizer.*adam.*sgd" "${SMALL[@]}" "${base[@]}" --optimizer sgd
expect_error resume_lr 1 "--lr" "${SMALL[@]}" "${base[@]}" --lr 0.01
expect_error resume_seed 1 "--seed.*0.*3" "${SMALL[@]}" "${base[@]}" --seed 3
expect_error resume_activation 1 "--activation.*pau.*relu" "${SMALL[@]}" "${base[@]}" --activation relu
expect_error resume_many 1 "--act-degrees.*--batch-size" "${SMALL[@]}" "${base[@]}" --act-degrees 3,2 --batch-size 16
grep -q "^1," "$WORK/run/metrics.csv" && ! grep -q "^2," "$WORK/run/metrics.csv" || fail "a refused resume trained"
grep -q "error: .*cannot resume: this command's settings" "$WORK/run/log.txt" || fail "the refused resume's error is not in log.txt"
# Threads, workers, progress and more epochs are harmless.
"$BIN" --synthetic --synthetic-train-size 128 --synthetic-test-size 32 --threads 2 --workers 1 --progress \
  "${base[@]}" > "$WORK/resume_ok.out" 2>&1 || fail "a resume with other threads/workers exited $?: $(tail -3 "$WORK/resume_ok.out")"
grep -q "^2," "$WORK/run/metrics.csv" || fail "the allowed resume did not train epoch 2"

# Pruning: pruning.csv gets a row per round; a resume keeps --prune-fraction and --epochs.
"$BIN" "${SMALL[@]}" --output "$WORK/prune" --prune-rounds 1 --prune-fraction 0.5 > "$WORK/prune.out" 2>&1 \
  || fail "a pruning run exited $?: $(tail -3 "$WORK/prune.out")"
[ "$(head -1 "$WORK/prune/pruning.csv")" = "round,pruned_fraction,test_accuracy,test_loss,alive_filters,total_filters" ] \
  && grep -q "^0,0," "$WORK/prune/pruning.csv" && grep -q "^1,0.5,.*,71,142$" "$WORK/prune/pruning.csv" \
  || fail "pruning.csv: $(cat "$WORK/prune/pruning.csv")"
expect_error resume_prune_fraction 1 "--prune-fraction: checkpoint 0.5, now 0.25" "${SMALL[@]}" --output "$WORK/prune" \
  --resume --prune-rounds 1 --prune-fraction 0.25
expect_error resume_prune_epochs 1 "--epochs: checkpoint 1, now 2 \(each pruning round" "${SMALL[@]}" --output "$WORK/prune" \
  --resume --prune-rounds 1 --prune-fraction 0.5 --epochs 2

# Another --data-dir with the same data may resume; other data may not (counts + CRC-32 recorded).
python3 - "$WORK" <<'PY'
import gzip, pathlib, struct, sys
def idx(path, dims, data):
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data))
for name, shift in [("mnist_a", 0), ("mnist_a_copy", 0), ("mnist_b", 1)]:
    d = pathlib.Path(sys.argv[1]) / name
    d.mkdir()
    for split, n in [("train", 96), ("t10k", 32)]:
        idx(d / f"{split}-images-idx3-ubyte.gz", [n, 28, 28], [(i * 7 + shift) % 256 for i in range(n * 784)])
        idx(d / f"{split}-labels-idx1-ubyte.gz", [n], [i % 10 for i in range(n)])
PY
MN=(--dataset mnist --threads 1 --workers 0 --no-progress --output "$WORK/mnist_run")
"$BIN" "${MN[@]}" --data-dir "$WORK/mnist_a" --epochs 1 > "$WORK/mnist1.out" 2>&1 || fail "mnist run: $(tail -3 "$WORK/mnist1.out")"
"$BIN" "${MN[@]}" --data-dir "$WORK/mnist_a_copy" --epochs 2 --resume > "$WORK/mnist2.out" 2>&1 \
  || fail "a resume from a copy of the same data was refused: $(tail -3 "$WORK/mnist2.out")"
expect_error resume_other_data 1 "train data: checkpoint 96 samples .*now 96 samples" "${MN[@]}" --data-dir "$WORK/mnist_b" --epochs 3 --resume

# ---- damaged, truncated and foreign checkpoints: exit 1, never training from them ------------
cp -r "$WORK/run" "$WORK/good"
damage() {  # damage NAME PYTHON-STATEMENTS-ON-bytearray-b
  rm -rf "$WORK/$1" && cp -r "$WORK/good" "$WORK/$1"
  python3 - "$WORK/$1/checkpoint.pt" "$2" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
exec(sys.argv[2])
open(p, "wb").write(bytes(b))
PY
}
damage flipped 'mid = len(b) // 2
for i in range(mid, mid + 64): b[i] ^= 0xFF'
expect_error ckpt_flipped 1 "error: .*checkpoint.pt.*(damaged|CRC)" "${SMALL[@]}" --output "$WORK/flipped" --resume --epochs 3
damage truncated 'del b[len(b) * 2 // 3:]'
expect_error ckpt_truncated 1 "error: .*checkpoint.pt.*truncated" "${SMALL[@]}" --output "$WORK/truncated" --resume --epochs 3
damage foreign 'b[:] = b"PK\x03\x04" + bytes(range(256)) * 40'
expect_error ckpt_foreign 1 "error: .*checkpoint.pt.*not a rational_train checkpoint" "${SMALL[@]}" --output "$WORK/foreign" --resume --epochs 3
damage empty 'b[:] = b""'
expect_error ckpt_empty 1 "error: .*checkpoint.pt" "${SMALL[@]}" --output "$WORK/empty" --resume --epochs 3
for d in flipped truncated foreign empty; do
  grep -q "^3," "$WORK/$d/metrics.csv" && fail "ckpt_$d: trained from a bad checkpoint"
done

# ---- failed writes: exit 1 with a message, no temp file, the previous checkpoint intact --------
# (a) a real kernel error: a file-size limit (EFBIG) below the checkpoint's size (LeNet + Adam:
#     ~800 KB), above summary.json's (~65 KB). rational_train ignores SIGXFSZ itself, so that
#     write() returns the error instead of the signal killing it (exit 153).
cp -r "$WORK/good" "$WORK/fsize"
sum_before=$(sha256sum < "$WORK/fsize/checkpoint.pt")
( ulimit -f 300; exec "$BIN" "${SMALL[@]}" --output "$WORK/fsize" --resume --epochs 3 ) \
  > "$WORK/fsize.out" 2> "$WORK/fsize.err"
rc=$?
[ "$rc" = 1 ] || fail "a write past the file-size limit exited $rc, expected 1: $(tail -3 "$WORK/fsize.err")"
grep -Eq "error: .*checkpoint.pt.*(File too large|write)" "$WORK/fsize.err" || fail "fsize: message: $(cat "$WORK/fsize.err")"
[ ! -e "$WORK/fsize/checkpoint.pt.tmp" ] || fail "fsize: checkpoint.pt.tmp left behind"
[ "$(sha256sum < "$WORK/fsize/checkpoint.pt")" = "$sum_before" ] || fail "fsize: the previous checkpoint changed"
"$BIN" "${SMALL[@]}" --output "$WORK/fsize" --resume --epochs 3 > "$WORK/fsize2.out" 2>&1 \
  || fail "fsize: the kept checkpoint does not resume: $(tail -3 "$WORK/fsize2.out")"
# (b) injected failures (RATIONAL_TRAIN_FAIL_WRITE=FILE:N[:ERRNO], see docs/training.md) for each
#     file the run writes and each stage (ENOSPC: disk full mid-write, EACCES: open, EIO: fsync).
inject() {  # inject NAME SPEC FILE-NAMED-IN-MESSAGE REASON
  rm -rf "$WORK/$1" && cp -r "$WORK/good" "$WORK/$1"
  local before
  before=$(sha256sum < "$WORK/$1/checkpoint.pt")
  RATIONAL_TRAIN_FAIL_WRITE="$2" expect_error "$1" 1 "error: .*$3.*$4" "${SMALL[@]}" --output "$WORK/$1" --resume --epochs 3
  for f in checkpoint.pt.tmp metrics.csv.tmp summary.json.tmp; do
    [ ! -e "$WORK/$1/$f" ] || fail "$1: $f left behind"
  done
  # A failed checkpoint write keeps the previous one byte for byte; after a failed metrics or
  # summary write the checkpoint (written first) may be the new epoch's. Either way it resumes.
  if [ "${2%%:*}" = checkpoint.pt ]; then
    [ "$(sha256sum < "$WORK/$1/checkpoint.pt")" = "$before" ] || fail "$1: the previous checkpoint changed"
  fi
  "$BIN" "${SMALL[@]}" --output "$WORK/$1" --resume --epochs 3 > "$WORK/$1.again" 2>&1 \
    || fail "$1: no resume after the failed write: $(tail -3 "$WORK/$1.again")"
  grep -q "^3," "$WORK/$1/metrics.csv" || fail "$1: metrics.csv lacks epoch 3 after the resume"
}
inject full_ckpt checkpoint.pt:1 checkpoint.pt "No space left"
inject full_metrics metrics.csv:1 metrics.csv "No space left"
inject full_summary summary.json:1 summary.json "No space left"
inject perm_ckpt checkpoint.pt:1:EACCES checkpoint.pt "Permission denied"
inject eio_ckpt checkpoint.pt:1:EIO checkpoint.pt "Input/output error"

# (b2) a really full disk: a 1200 KB tmpfs holding the run (~870 KB) has no room for the next
#     checkpoint (~800 KB); see full_disk.sh. Skipped where no mount namespace is allowed.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$WORK/tmpfs"
if command -v unshare > /dev/null && unshare -rm true 2> /dev/null; then
  result=$(unshare -rm bash "$HERE/full_disk.sh" 1200k "$WORK/tmpfs" "$WORK/good" "$WORK/tmpfs_run" "$BIN" "${SMALL[@]}")
  rc=$?
  if [ "$rc" = 77 ]; then echo "cli_test: full tmpfs skipped (cannot mount)"; else [ "$rc" = 0 ] || fail "full tmpfs: $result"; fi
else
  echo "cli_test: full tmpfs skipped (no unshare -rm)"
fi

# (c) log.txt on a full device (/dev/full): stdout keeps the whole console output, the results are
#     written, and the failed log is an error.
mkdir -p "$WORK/fulllog" && ln -s /dev/full "$WORK/fulllog/log.txt"
"$BIN" "${SMALL[@]}" --epochs 1 --output "$WORK/fulllog" > "$WORK/fulllog.out" 2> "$WORK/fulllog.err"
rc=$?
[ "$rc" = 1 ] || fail "fulllog: exited $rc, expected 1: $(cat "$WORK/fulllog.err")"
grep -q "error: .*log.txt: write failed: No space left" "$WORK/fulllog.err" || fail "fulllog: message: $(cat "$WORK/fulllog.err")"
grep -q "^test accuracy" "$WORK/fulllog.out" || fail "fulllog: stdout lost the console output: $(cat "$WORK/fulllog.out")"
[ -f "$WORK/fulllog/summary.json" ] || fail "fulllog: no summary.json"

echo "cli_test: all passed"
