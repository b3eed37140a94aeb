#!/usr/bin/env bash
# Two flashcopy release binaries side by side (before/after a change), 1 node and 3 nodes, with
# qemu-nbd writeback beside them, alternating, ROUNDS times: sequential write 1 MiB QD8 and
# random write 4 KiB QD1. Prints one line per run; take the medians.
# Usage: bench/compare.sh BEFORE-BINARY AFTER-BINARY [ROUNDS, default 3]
source "$(dirname "$0")/lib.sh"
[ $# -ge 2 ] || { echo "usage: bench/compare.sh BEFORE-BINARY AFTER-BINARY [ROUNDS]" >&2; exit 2; }
before="$1"; after="$2"; rounds="${3:-3}"
for round in $(seq 1 "$rounds"); do
  for peer in before1 after1 before3 after3 writeback; do
    case "$peer" in
      before*) bin="$before" ;;
      after*) bin="$after" ;;
    esac
    case "$peer" in
      *1 | *3) start_nodes "${peer: -1}"; cli mkvol vol --size 1G >/dev/null; uri="$(nbd_uri vol 1)" ;;
      writeback) start_qemu_nbd writeback 1G; uri="nbd://127.0.0.1:10950/vol" ;;
    esac
    read -r mib _ < <(fio_run "$uri" write 1M 8 8)
    read -r _ iops < <(fio_run "$uri" randwrite 4k 1 6)
    echo "round $round $peer: sequential write 1M QD8 $mib MiB/s, random write 4K QD1 $iops IOPS"
    cleanup
  done
done
