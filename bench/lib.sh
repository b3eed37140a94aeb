# Shared by the bench scripts: build, start and stop flashcopy (one node or three) and
# qemu-nbd on this machine, and small helpers. Sourced, not run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flashcopy-target}"
bin="$CARGO_TARGET_DIR/release/flashcopy"
work="${BENCH_DIR:-/tmp/flashcopy-bench}"
pids=()

build() {
  "$here/scripts/prerequisites"
  "$here/scripts/build-release"
  command -v fio >/dev/null && command -v qemu-nbd >/dev/null && command -v python3 >/dev/null || {
    echo "error: fio, qemu-nbd and python3 are needed (scripts/prerequisites installs them)" >&2
    exit 1
  }
}

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap cleanup EXIT

# Ports: api 7800+n, raft 7850+n, nbd 10900+n for node n (1..3); qemu-nbd on 10950.
api() { echo "http://127.0.0.1:$((7800 + ${1:-1}))"; }
nbd_uri() { echo "nbd://127.0.0.1:$((10900 + ${2:-1}))/$1"; }
cli() { "$bin" "$@" --api "$(api 1)"; }

wait_ready() {
  for _ in $(seq 1 600); do
    "$bin" health --api "$(api "$1")" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "error: node $1 did not start; its log:" >&2
  tail -20 "$work/n$1.log" >&2
  exit 1
}

# start_nodes N [serve args...]: a fresh cluster of N nodes (1 or 3) in $work.
start_nodes() {
  local count="$1"
  shift
  cleanup
  rm -rf "$work/n1" "$work/n2" "$work/n3"
  mkdir -p "$work"
  for n in $(seq 1 "$count"); do
    local join=()
    [ "$n" -gt 1 ] && join=(--join "$(api 1)")
    "$bin" serve --data-dir "$work/n$n" --node-id "$n" --api "127.0.0.1:$((7800 + n))" \
      --raft "127.0.0.1:$((7850 + n))" --nbd "127.0.0.1:$((10900 + n))" "${join[@]}" "$@" \
      >"$work/n$n.log" 2>&1 &
    pids+=($!)
    wait_ready "$n"
  done
  if [ "$count" -gt 1 ]; then
    for _ in $(seq 1 600); do
      [ "$(cli cluster status --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(1 for n in s["nodes"] if n["role"] != "learner"))')" = "$count" ] && return 0
      sleep 0.2
    done
    echo "error: the cluster did not form" >&2
    exit 1
  fi
}

# start_qemu_nbd CACHE SIZE: qemu-nbd serving a fresh raw file (export name "vol").
start_qemu_nbd() {
  cleanup
  mkdir -p "$work"
  rm -f "$work/raw.img"
  truncate -s "$2" "$work/raw.img"
  qemu-nbd --persistent --shared=16 --format=raw --cache="$1" --aio=threads --discard=unmap -x vol \
    --bind 127.0.0.1 --port 10950 "$work/raw.img" >"$work/qemu-nbd.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    nbdinfo --size nbd://127.0.0.1:10950/vol >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "error: qemu-nbd did not start" >&2
  exit 1
}

# fio_run URI RW BS DEPTH SECONDS: prints MiB/s and IOPS of one fio job over NBD.
fio_run() {
  fio --name=bench --ioengine=nbd --uri="$1" --rw="$2" --bs="$3" --iodepth="$4" \
    --time_based --runtime="$5" --ramp_time=2 --size=1G --randrepeat=0 \
    --output-format=json 2>/dev/null |
    python3 -c '
import json, sys
text = sys.stdin.read()
job = json.loads(text[text.index("{"):])["jobs"][0]  # fio nbd prints a line first
side = job["write"] if job["write"]["io_bytes"] > 0 else job["read"]
print("%.0f %.0f" % (side["bw_bytes"] / 2**20, side["iops"]))'
}

# Fills SIZE of an NBD export with incompressible data (sequential 1 MiB writes).
fill() {
  fio --name=fill --ioengine=nbd --uri="$1" --rw=write --bs=1M --iodepth=8 --size="$2" \
    --refill_buffers --output-format=terse >/dev/null 2>&1
}

# cow_setup RELS: a fresh node, a 1 GiB source `src` written full, and RELS nocopy targets of it
# (none for 0): the next write to each source track is the first since the establish.
cow_setup() {
  start_nodes 1
  cli mkvol src --size 1G >/dev/null
  fill "$(nbd_uri src)" 1G
  local pairs=()
  for t in $(seq 1 "$1"); do
    cli mkvol "t$t" --size 1G >/dev/null
    pairs+=("src:t$t")
  done
  [ "$1" -eq 0 ] || cli mkflash "${pairs[@]}" --nocp >/dev/null
}

# cow_write: 1 GiB of 64 KiB writes QD16 over `src`; prints MiB/s.
cow_write() {
  fio --name=cow --ioengine=nbd --uri="$(nbd_uri src)" --rw=write --bs=64k --iodepth=16 \
    --size=1G --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; t=sys.stdin.read(); print("%.0f" % (json.loads(t[t.index("{"):])["jobs"][0]["write"]["bw_bytes"] / 2**20))'
}

# Milliseconds since the epoch.
now_ms() { date +%s%3N; }

# median of the arguments
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print('%.0f%%' % (100*a/b) if b else '-')" "$1" "$2"; }
