#!/usr/bin/env bash
# FlashCopy costs on one node, each against its peer in the same run:
#   establish on a 1 GiB and a 1 TiB source (median of ROUNDS);
#   background copy of a fully written 1 GiB volume vs `qemu-img convert` of a 1 GiB raw file;
#   64 KiB writes to a fully written source with 0, 1 and 12 nocopy relationships;
#   refresh after 1% of a 1 GiB volume changed vs the full copy;
#   peak RSS of a node holding 12 relationships on 1 TiB volumes after 256 MiB of writes.
# Usage: bench/flashcopy.sh [ROUNDS, default 5]
source "$(dirname "$0")/lib.sh"
rounds="${1:-5}"
build
ms() { local t0; t0=$(now_ms); "$@" >/dev/null; echo $(($(now_ms) - t0)); }

echo "== establish" >&2
start_nodes 1
cli mkvol s1g --size 1G >/dev/null; cli mkvol t1g --size 1G >/dev/null
cli mkvol s1t --size 1T >/dev/null; cli mkvol t1t --size 1T >/dev/null
fill "$(nbd_uri s1g)" 1G
fill "$(nbd_uri s1t)" 1G
e1g=(); e1t=()
for _ in $(seq 1 "$rounds"); do
  for size in 1g 1t; do
    t=$(ms cli mkflash "s$size:t$size" --nocp)
    cli rmflash "s$size:t$size" >/dev/null
    if [ "$size" = 1g ]; then e1g+=("$t"); else e1t+=("$t"); fi
  done
done
est1g=$(median "${e1g[@]}"); est1t=$(median "${e1t[@]}")

echo "== background copy vs qemu-img convert" >&2
copy=(); convert=()
head -c 1G /dev/urandom >"$work/src.raw"
for _ in $(seq 1 "$rounds"); do
  copy+=("$(ms cli mkflash s1g:t1g --wait)")
  cli rmflash s1g:t1g >/dev/null 2>&1 || true # a completed copy has ended by itself
  rm -f "$work/dst.raw"
  convert+=("$(ms qemu-img convert -f raw -O raw "$work/src.raw" "$work/dst.raw")")
done
rm -f "$work/src.raw" "$work/dst.raw"
copy_ms=$(median "${copy[@]}"); convert_ms=$(median "${convert[@]}")

echo "== refresh after 1% changed vs full copy" >&2
full=(); refresh=()
for _ in $(seq 1 "$rounds"); do
  full+=("$(ms cli mkflash s1g:t1g --persist --record --wait)")
  # 1% of the volume: 164 random 64 KiB writes.
  fio --name=change --ioengine=nbd --uri="$(nbd_uri s1g)" --rw=randwrite --bs=64k --size=1G \
    --io_size=10496k --randrepeat=0 --norandommap --output-format=terse >/dev/null 2>&1
  refresh+=("$(ms cli resyncflash s1g:t1g --wait)")
  cli rmflash s1g:t1g >/dev/null
done
full_ms=$(median "${full[@]}"); refresh_ms=$(median "${refresh[@]}")

echo "== copy-on-write cost" >&2
declare -A cow
for _ in $(seq 1 "$rounds"); do
  for rels in 0 1 12; do
    cow_setup "$rels"
    # Every 64 KiB write is the first to its track since the establish: each one copies.
    cow[$rels]+="$(cow_write) "
  done
done
cow0=$(median ${cow[0]}); cow1=$(median ${cow[1]}); cow12=$(median ${cow[12]})

echo "== peak RSS" >&2
start_nodes 1
cli mkvol src --size 1T >/dev/null
pairs=()
for t in $(seq 1 12); do
  cli mkvol "t$t" --size 1T >/dev/null
  pairs+=("src:t$t")
done
cli mkflash "${pairs[@]}" --nocp >/dev/null
fio --name=rss --ioengine=nbd --uri="$(nbd_uri src)" --rw=randwrite --bs=64k --iodepth=16 \
  --size=1T --io_size=256M --randrepeat=0 --output-format=terse >/dev/null 2>&1
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/${pids[0]}/status")
cleanup

echo
echo "| measure (median of $rounds) | flashcopy | peer | ratio | target |"
echo "|---|---|---|---|---|"
echo "| establish, 1 GiB source | ${est1g} ms | — | — | < 20 ms |"
echo "| establish, 1 TiB source | ${est1t} ms | 1 GiB: ${est1g} ms | $(ratio "$est1t" "$est1g") | < 150% |"
echo "| background copy of 1 GiB written / qemu-img convert 1 GiB raw | ${copy_ms} ms | ${convert_ms} ms | $(ratio "$convert_ms" "$copy_ms") of its speed | ≥ 80% |"
echo "| refresh after 1% changed / full copy | ${refresh_ms} ms | ${full_ms} ms | $(ratio "$refresh_ms" "$full_ms") | ≤ 5% |"
echo "| 64 KiB source writes, 1 nocopy relationship / none | ${cow1} MiB/s | ${cow0} MiB/s | $(ratio "$cow1" "$cow0") (costs $(ratio "$((cow0 - cow1))" "$cow0")) | costs ≤ 40% |"
echo "| 64 KiB source writes, 12 nocopy relationships / none | ${cow12} MiB/s | ${cow0} MiB/s | $(ratio "$cow12" "$cow0") | — |"
echo "| 64 KiB source writes, 12 nocopy relationships / 1 | ${cow12} MiB/s | ${cow1} MiB/s | $(ratio "$cow12" "$cow1") | ≥ 67% |"
echo "| peak RSS, 12 relationships on 1 TiB, 256 MiB written (one run) | $((rss_kib / 1024)) MiB | — | — | < 256 MiB |"
