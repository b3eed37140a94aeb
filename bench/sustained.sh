#!/usr/bin/env bash
# Sustained sequential writes, two flashcopy release binaries side by side (before/after a
# change), one node, alternating with qemu-nbd (writeback and directsync), ROUNDS times. Each
# flashcopy run starts a fresh node and writes 1 MiB QD8 for 8 s twice: the first run starts
# with an empty log, the second with a log cut back at least once (past --max-log-size; what
# a node under sustained writes runs with). For the second: the bytes written to the disk per
# host byte (/proc/diskstats over the run plus 5 s: the node is the only writer; the node's
# /proc/PID/io counts overwritten pages more than once). Then random 4 KiB writes QD1 for 6 s.
# Usage: bench/sustained.sh BEFORE-BINARY AFTER-BINARY [ROUNDS, default 2]
source "$(dirname "$0")/lib.sh"
[ $# -ge 2 ] || { echo "usage: bench/sustained.sh BEFORE-BINARY AFTER-BINARY [ROUNDS]" >&2; exit 2; }
before="$1"; after="$2"; rounds="${3:-2}"
host_bytes() { curl -s "$(api 1)/metrics" | awk '$1 == "flashcopy_nbd_bytes_total{command=\"write\"}" { print $2 }'; }
# Bytes written to the disk under the benchmarks' directory, from /proc/diskstats.
mkdir -p "$work"
disk="$(lsblk -no PKNAME "$(df --output=source "$work" | tail -1)" 2>/dev/null || true)"
disk="${disk:-$(basename "$(df --output=source "$work" | tail -1)")}"
disk_bytes() { awk -v d="$disk" '$3 == d { print $10 * 512 }' /proc/diskstats; }
for round in $(seq 1 "$rounds"); do
  for peer in before after writeback directsync; do
    case "$peer" in
      writeback | directsync)
        start_qemu_nbd "$peer" 1G
        read -r mib _ < <(fio_run "nbd://127.0.0.1:10950/vol" write 1M 8 8)
        read -r _ iops < <(fio_run "nbd://127.0.0.1:10950/vol" randwrite 4k 1 6)
        echo "round $round $peer: write 1M QD8 $mib MiB/s, random write 4K QD1 $iops IOPS"
        ;;
      *)
        [ "$peer" = before ] && bin="$before" || bin="$after"
        start_nodes 1
        cli mkvol vol --size 1G >/dev/null
        uri="$(nbd_uri vol)"
        read -r fresh _ < <(fio_run "$uri" write 1M 8 8)
        host0="$(host_bytes)"; disk0="$(disk_bytes)"
        read -r warm _ < <(fio_run "$uri" write 1M 8 8)
        sleep 5
        host1="$(host_bytes)"; disk1="$(disk_bytes)"
        per=$(python3 -c "print('%.2f' % (($disk1 - $disk0) / max(1, $host1 - $host0)))")
        spares=$(find "$work/n1/raft-log" -name '*.spare' | wc -l)
        read -r _ iops < <(fio_run "$uri" randwrite 4k 1 6)
        echo "round $round $peer: write 1M QD8 fresh $fresh MiB/s, after a cut-back $warm MiB/s ($per disk bytes per host byte, $spares spare segments), random write 4K QD1 $iops IOPS"
        ;;
    esac
    cleanup
  done
done
