#!/usr/bin/env bash
# Profiles a single release node under one fio workload over NBD: `perf record -g` on the node
# for SECONDS while fio runs, then the top of `perf report` (self time, by symbol) and the
# disk bytes written per host byte (from /proc/PID/io).
# Usage: bench/profile.sh [RW, default write] [BS, default 1M] [DEPTH, default 8] [SECONDS, default 15]
source "$(dirname "$0")/lib.sh"
rw="${1:-write}"; bs="${2:-1M}"; depth="${3:-8}"; seconds="${4:-15}"
command -v perf >/dev/null || { echo "error: perf is needed (Debian: linux-perf)" >&2; exit 1; }
build
start_nodes 1
cli mkvol vol --size 1G >/dev/null
[[ "$rw" == *read ]] && fill "$(nbd_uri vol)" 1G
node="${pids[0]}"
written_before=$(awk '/^write_bytes/ {print $2}' "/proc/$node/io")
fio --name=profile --ioengine=nbd --uri="$(nbd_uri vol)" --rw="$rw" --bs="$bs" --iodepth="$depth" \
  --time_based --runtime=$((seconds + 4)) --size=1G --randrepeat=0 --output-format=json \
  >"$work/profile-fio.json" 2>/dev/null &
fio_pid=$!
sleep 2
perf record -g -o "$work/perf.data" -p "$node" -- sleep "$seconds" 2>/dev/null
wait "$fio_pid"
written=$(( $(awk '/^write_bytes/ {print $2}' "/proc/$node/io") - written_before ))
host=$(python3 -c 'import json,sys; t=open(sys.argv[1]).read(); j=json.loads(t[t.index("{"):])["jobs"][0]; print(j["write"]["io_bytes"])' "$work/profile-fio.json")
mib=$(python3 -c 'import json,sys; t=open(sys.argv[1]).read(); j=json.loads(t[t.index("{"):])["jobs"][0]; s=j["write"] if j["write"]["io_bytes"] else j["read"]; print("%.0f MiB/s, %.0f IOPS" % (s["bw_bytes"]/2**20, s["iops"]))' "$work/profile-fio.json")
echo "fio $rw $bs QD$depth: $mib"
[ "$host" -gt 0 ] && echo "disk bytes written by the node per host byte written: $(python3 -c "print('%.2f' % ($written / $host))")"
perf report -i "$work/perf.data" --stdio --no-children --sort dso,symbol --percent-limit 1.5 2>/dev/null |
  grep -v '^$' | grep -E '^ +[0-9]' | head -40
