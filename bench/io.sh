#!/usr/bin/env bash
# Host I/O over NBD with fio, flashcopy (1 node, 3 nodes) against qemu-nbd serving a raw file
# (--cache=writeback, and --cache=directsync: durable per write like a committed entry), on a
# 1 GiB volume, in one run. Each workload runs on every peer in turn, ROUNDS times
# (alternating), and the table shows medians and flashcopy's ratio to its peer.
# Usage: bench/io.sh [SECONDS per run, default 8] [ROUNDS, default 1]
source "$(dirname "$0")/lib.sh"
seconds="${1:-8}"
rounds="${2:-1}"
build

workloads=(
  "seq-write-1M-QD8 write 1M 8"
  "seq-write-64K-QD16 write 64k 16"
  "rand-write-4K-QD16 randwrite 4k 16"
  "rand-write-4K-QD1 randwrite 4k 1"
  "rand-read-4K-QD16 randread 4k 16"
  "seq-read-64K-QD16 read 64k 16"
)
peers=(fc1 fc3 writeback directsync)
declare -A result

setup() {
  case "$1" in
    fc1 | fc3)
      start_nodes "${1#fc}"
      cli mkvol vol --size 1G >/dev/null
      uri="$(nbd_uri vol 1)"
      ;;
    writeback | directsync)
      start_qemu_nbd "$1" 1G
      uri="nbd://127.0.0.1:10950/vol"
      ;;
  esac
  # Reads need written data: fill the volume once per peer.
  fill "$uri" 1G
}

for round in $(seq 1 "$rounds"); do
  for peer in "${peers[@]}"; do
    setup "$peer"
    for w in "${workloads[@]}"; do
      read -r name rw bs depth <<<"$w"
      if [ "$peer" = directsync ] && [[ "$rw" == *read ]]; then continue; fi
      read -r mib iops < <(fio_run "$uri" "$rw" "$bs" "$depth" "$seconds")
      result["$name/$peer"]+="$mib:$iops "
      echo "round $round $peer $name: $mib MiB/s, $iops IOPS" >&2
    done
    cleanup
  done
done

value() { # the median of MiB/s (sequential) or IOPS (random) of one cell
  local cell="${result["$1/$2"]:-}" field=1
  [ -n "$cell" ] || { echo "-"; return; }
  [[ "$1" == rand* ]] && field=2
  median $(printf '%s\n' $cell | cut -d: -f"$field")
}

echo
echo "| workload (median of $rounds, ${seconds}s each) | flashcopy 1 node | flashcopy 3 nodes | qemu-nbd writeback | qemu-nbd directsync | 1 node / peer | 3 nodes / peer |"
echo "|---|---|---|---|---|---|---|"
for w in "${workloads[@]}"; do
  read -r name rw _ _ <<<"$w"
  unit="MiB/s"; [[ "$name" == rand* ]] && unit="IOPS"
  one="$(value "$name" fc1)"; three="$(value "$name" fc3)"
  wb="$(value "$name" writeback)"; ds="$(value "$name" directsync)"
  # The peer each target names: writeback for sequential writes and reads, directsync for
  # random writes.
  peer="$wb"; [[ "$rw" == randwrite ]] && peer="$ds"
  echo "| $name ($unit) | $one | $three | $wb | $ds | $(ratio "$one" "$peer") | $(ratio "$three" "$peer") |"
done
