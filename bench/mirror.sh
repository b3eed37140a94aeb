#!/usr/bin/env bash
# What Metro Mirror costs: host writes over NBD with fio to a volume of site A mirrored to site B
# (two single-node clusters on this machine, so the mirror's cost is one more commit and one
# HTTP round trip), against an unmirrored volume of the same site A, in one run, alternating,
# ROUNDS times. The table shows medians and the mirrored volume's ratio to the unmirrored one.
# Usage: bench/mirror.sh [SECONDS per run, default 8] [ROUNDS, default 1]
source "$(dirname "$0")/lib.sh"
seconds="${1:-8}"
rounds="${2:-1}"
build

workloads=(
  "seq-write-1M-QD8 write 1M 8"
  "rand-write-4K-QD1 randwrite 4k 1"
  "rand-write-4K-QD16 randwrite 4k 16"
)
declare -A result

# Site A is node slot 1, site B node slot 2 (ports from lib.sh), each its own cluster.
start_site() {
  local n="$1"
  "$bin" serve --data-dir "$work/site$n" --node-id 1 --api "127.0.0.1:$((7800 + n))" \
    --raft "127.0.0.1:$((7850 + n))" --nbd "127.0.0.1:$((10900 + n))" >"$work/n$n.log" 2>&1 &
  pids+=($!)
  wait_ready "$n"
}

cleanup
rm -rf "$work/site1" "$work/site2"
mkdir -p "$work"
start_site 1
start_site 2
cli mkvol plain --size 1G >/dev/null
cli mkvol mirrored --size 1G >/dev/null
"$bin" mkvol mirrored-r --size 1G --api "$(api 2)" >/dev/null
for _ in $(seq 1 100); do
  cli mkpprcpath --remote "$(api 2)" >/dev/null 2>&1 && break
  sleep 0.1
done
cli mkpprc mirrored:mirrored-r >/dev/null
for _ in $(seq 1 600); do
  cli lspprc mirrored --json | grep -q '"full-duplex"' && break
  sleep 0.1
done

for round in $(seq 1 "$rounds"); do
  for volume in plain mirrored; do
    for w in "${workloads[@]}"; do
      read -r name rw bs depth <<<"$w"
      read -r mib iops < <(fio_run "$(nbd_uri "$volume" 1)" "$rw" "$bs" "$depth" "$seconds")
      result["$name/$volume"]+="$mib:$iops "
      echo "round $round $volume $name: $mib MiB/s, $iops IOPS" >&2
    done
  done
done
state="$(cli lspprc mirrored --json | python3 -c 'import json,sys; p=json.load(sys.stdin)[0]; print(p["state"], p["out_of_sync_tracks"])')"
wait_seconds="$(curl -s "$(api 1)/metrics" | awk '/^flashcopy_mirror_wait_seconds_sum/ {s=$2} /^flashcopy_mirror_wait_seconds_count/ {c=$2} END {if (c) printf "%.2f", 1000*s/c; else print "-"}')"

value() { # the median of MiB/s (sequential) or IOPS (random) of one cell
  local cell="${result["$1/$2"]:-}" field=1
  [ -n "$cell" ] || { echo "-"; return; }
  [[ "$1" == rand* ]] && field=2
  median $(printf '%s\n' $cell | cut -d: -f"$field")
}

echo
echo "| workload (median of $rounds, ${seconds}s each) | unmirrored | mirrored (2 single-node sites) | mirrored / unmirrored |"
echo "|---|---|---|---|"
for w in "${workloads[@]}"; do
  read -r name _ _ _ <<<"$w"
  unit="MiB/s"; [[ "$name" == rand* ]] && unit="IOPS"
  plain="$(value "$name" plain)"; mirrored="$(value "$name" mirrored)"
  echo "| $name ($unit) | $plain | $mirrored | $(ratio "$mirrored" "$plain") |"
done
echo
echo "Pair after the run: $state (state, out-of-sync tracks); mean wait for the secondary per mirrored write: $wait_seconds ms."
