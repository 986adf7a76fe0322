#!/usr/bin/env bash
# A really full disk for rational_train, run by cli_test.sh inside `unshare -rm` (a private mount
# namespace; no root needed where user namespaces are enabled): mounts a tmpfs of SIZE on MNT,
# copies the run directory GOOD there and resumes it, so that the next checkpoint does not fit.
# Exit 0: an error naming checkpoint.pt and ENOSPC, exit 1, no temp file, the old checkpoint
# intact; 77: no tmpfs could be mounted (skip); else a failure, described on stdout.
# usage: full_disk.sh SIZE MNT GOOD OUT_PREFIX BIN ARGS...
set -u
SIZE="$1"; MNT="$2"; GOOD="$3"; OUT="$4"; BIN="$5"
shift 5
mount -t tmpfs -o "size=$SIZE" tmpfs "$MNT" 2> /dev/null || exit 77
cp -r "$GOOD"/. "$MNT"/ || { echo "the run directory does not fit into $SIZE"; exit 2; }
before=$(sha256sum < "$MNT/checkpoint.pt")
"$BIN" "$@" --output "$MNT" --resume --epochs 3 > "$OUT.out" 2> "$OUT.err"
rc=$?
[ "$rc" = 1 ] || { echo "exited $rc, expected 1: $(tail -3 "$OUT.err")"; exit 1; }
grep -q "error: .*checkpoint.pt.*No space left on device" "$OUT.err" || { echo "message: $(cat "$OUT.err")"; exit 1; }
[ ! -e "$MNT/checkpoint.pt.tmp" ] || { echo "checkpoint.pt.tmp left behind"; exit 1; }
[ "$(sha256sum < "$MNT/checkpoint.pt")" = "$before" ] || { echo "the previous checkpoint changed"; exit 1; }
exit 0
