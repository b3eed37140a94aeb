#!/usr/bin/env bash
# Copy-on-write to many targets, two flashcopy release binaries side by side (before/after a
# change), alternating, ROUNDS times: 64 KiB writes QD16 over a fully written 1 GiB source with
# 1 and with 12 nocopy relationships (every write is the first to its track since the
# establish, so each one copies), and the bytes the node wrote to disk per host byte
# (/proc/PID/io). Prints one line per run; take the medians.
# Usage: bench/cow.sh BEFORE-BINARY AFTER-BINARY [ROUNDS, default 3]
source "$(dirname "$0")/lib.sh"
[ $# -ge 2 ] || { echo "usage: bench/cow.sh BEFORE-BINARY AFTER-BINARY [ROUNDS]" >&2; exit 2; }
before="$1"; after="$2"; rounds="${3:-3}"
for round in $(seq 1 "$rounds"); do
  for peer in before after; do
    case "$peer" in
      before) bin="$before" ;;
      after) bin="$after" ;;
    esac
    for rels in 1 12; do
      cow_setup "$rels"
      written0=$(awk '/^write_bytes/ {print $2}' "/proc/${pids[0]}/io")
      mib=$(cow_write)
      sleep 5
      written=$(($(awk '/^write_bytes/ {print $2}' "/proc/${pids[0]}/io") - written0))
      echo "round $round $peer, $rels nocopy relationships: 64 KiB writes QD16 $mib MiB/s, $(python3 -c "print('%.2f' % ($written / 2**30))") bytes to disk per host byte"
      cleanup
    done
  done
done
