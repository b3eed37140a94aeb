#!/usr/bin/env bash
# The disk under the benchmarks' data directories, with fio alone: what a synced log can write
# at most, whichever store sits on top (docs/PERFORMANCE.md, section 6). Rows: large writes
# synced one at a time (direct, and buffered appends as the log does them, to a new file and to
# a reused one), the disk's most
# (1 MiB direct writes eight in flight), and small synced writes that grow the file against ones
# that overwrite written blocks; and the page cache alone (buffered writes, no sync) into a new
# file and over the same file again (section 12: on a virtual machine whose free memory is
# reported back to its host, pages the cache takes anew can cost a fault on the host each).
# Usage: bench/disk.sh
set -euo pipefail
work="${BENCH_DIR:-/tmp/flashcopy-bench}"
mkdir -p "$work"
file="$work/disk-probe"
trap 'rm -f "$file"' EXIT
command -v fio >/dev/null || { echo "error: fio is needed (scripts/prerequisites installs it)" >&2; exit 1; }

# run LABEL FIO-ARGS...: one fio job on $file, printing its bandwidth and IOPS.
run() {
  local label="$1"; shift
  local line
  line=$(fio --name=disk --filename="$file" --output-format=terse --terse-version=3 "$@" | tail -1)
  # Terse v3: field 48 is write bandwidth (KiB/s), 49 write IOPS.
  awk -F';' -v label="$label" '{ printf "%-52s %8.0f MiB/s %8.0f IOPS\n", label, $48 / 1024, $49 }' <<<"$line"
}

rm -f "$file"
run "4 MiB direct, fdatasync after each" --rw=write --bs=4M --size=512M --direct=1 --fdatasync=1
rm -f "$file"
run "4 MiB buffered appends, fdatasync after each" --rw=write --bs=4M --size=512M --fdatasync=1 --file_append=1
rm -f "$file"
run "8 MiB direct, fdatasync after each" --rw=write --bs=8M --size=1G --direct=1 --fdatasync=1
rm -f "$file"
# The log's large appends: into a new file (it grows) or into a file written before and dropped
# from the page cache (a reused segment).
run "8 MiB buffered appends to a new file, fdatasync after each" --rw=write --bs=8M --size=512M --fdatasync=1 --file_append=1
sync && { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null || true
run "8 MiB buffered overwrites of a written file, fdatasync after each" --rw=write --bs=8M --size=512M --fdatasync=1
run "1 MiB direct, 8 in flight (the disk's most)" --rw=write --bs=1M --size=1G --direct=1 --iodepth=8 --ioengine=libaio
rm -f "$file"
run "8 KiB direct appends, fdatasync after each" --rw=write --bs=8k --size=16M --direct=1 --fdatasync=1 --file_append=1
run "8 KiB direct overwrites, fdatasync after each" --rw=write --bs=8k --size=16M --direct=1 --fdatasync=1
rm -f "$file"
run "1 MiB buffered writes to a new file, no sync" --rw=write --bs=1M --size=1G
run "1 MiB buffered overwrites of the same cached file, no sync" --rw=write --bs=1M --size=1G
