#!/usr/bin/env bash
# Thin volumes over NBD on one node, against qemu-nbd serving a sparse raw file with the same
# data, alternating in the same run:
#   nbdcopy and qemu-img convert (to qcow2) of a 1 TiB volume holding 1 GiB (16 x 64 MiB):
#     time, and for flashcopy the bytes read (flashcopy_nbd_bytes_total{command="read"});
#   zeroing the whole 1 TiB volume (what mkfs asks first) with qemu-io
#     `-d unmap -c 'write -z -u -n 0 1T'`: one WRITE_ZEROES request over extended headers that
#     may unmap (qemu-nbd runs with --discard=unmap). Without unmapping, qemu-nbd allocates the
#     zeroed terabyte in its raw file: it filled this machine's disk and failed, so runs before
#     this change measured a failure for the peer.
# Usage: bench/thin.sh [ROUNDS, default 3]
source "$(dirname "$0")/lib.sh"
rounds="${1:-3}"
build
command -v nbdcopy >/dev/null || { echo "error: nbdcopy is needed (scripts/prerequisites)" >&2; exit 1; }
ms() { local t0; t0=$(now_ms); "$@" >/dev/null; echo $(($(now_ms) - t0)); }
read_bytes() { curl -s "$(api 1)/metrics" | awk -F' ' '/^flashcopy_nbd_bytes_total\{command="read"\}/ {print $2}'; }

# write_gib URI: 1 GiB in 16 pieces of 64 MiB spread over the 1 TiB.
write_gib() {
  local args=()
  for i in $(seq 0 15); do args+=(-c "write -P $((i + 1)) $((i * 64))G 64M"); done
  qemu-io -f raw "${args[@]}" "$1" >/dev/null
}

copy_fc=(); copy_q=(); conv_fc=(); conv_q=(); trim_fc=(); trim_q=(); bytes_copy=(); bytes_conv=()
for _ in $(seq 1 "$rounds"); do
  echo "== flashcopy" >&2
  start_nodes 1
  cli mkvol big --size 1T >/dev/null
  uri="$(nbd_uri big)"
  write_gib "$uri"
  b0=$(read_bytes)
  copy_fc+=("$(ms nbdcopy "$uri" null:)")
  b1=$(read_bytes)
  rm -f "$work/out.qcow2"
  conv_fc+=("$(ms qemu-img convert -f raw -O qcow2 "$uri" "$work/out.qcow2")")
  b2=$(read_bytes)
  bytes_copy+=("$((b1 - b0))"); bytes_conv+=("$((b2 - b1))")
  trim_fc+=("$(ms qemu-io -f raw -d unmap -c 'write -z -u -n 0 1T' "$uri")")

  echo "== qemu-nbd" >&2
  start_qemu_nbd writeback 1T
  uri="nbd://127.0.0.1:10950/vol"
  write_gib "$uri"
  copy_q+=("$(ms nbdcopy "$uri" null:)")
  rm -f "$work/out.qcow2"
  conv_q+=("$(ms qemu-img convert -f raw -O qcow2 "$uri" "$work/out.qcow2")")
  trim_q+=("$(ms qemu-io -f raw -d unmap -c 'write -z -u -n 0 1T' "$uri")")
done
cleanup
rm -f "$work/out.qcow2" "$work/raw.img"

mib() { echo $(($1 / 1048576)); }
cf=$(median "${copy_fc[@]}"); cq=$(median "${copy_q[@]}")
vf=$(median "${conv_fc[@]}"); vq=$(median "${conv_q[@]}")
zf=$(median "${trim_fc[@]}"); zq=$(median "${trim_q[@]}")
echo
echo "| 1 TiB volume holding 1 GiB (median of $rounds) | flashcopy | qemu-nbd (sparse file) | flashcopy / qemu-nbd time | read by flashcopy |"
echo "|---|---|---|---|---|"
echo "| nbdcopy to null: | ${cf} ms | ${cq} ms | $(ratio "$cf" "$cq") | $(mib "$(median "${bytes_copy[@]}")") MiB |"
echo "| qemu-img convert -O qcow2 | ${vf} ms | ${vq} ms | $(ratio "$vf" "$vq") | $(mib "$(median "${bytes_conv[@]}")") MiB |"
echo "| zero the whole 1 TiB, unmapping (qemu-io -d unmap, write -z -u -n 0 1T) | ${zf} ms | ${zq} ms | $(ratio "$zf" "$zq") | — |"
