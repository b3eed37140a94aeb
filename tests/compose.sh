#!/usr/bin/env bash
# The docker-compose cluster under docker faults: builds the image (from the debug build the
# test suite made), brings three nodes up, and checks that what is made through one node is
# seen through the others, data written over NBD verifies, a FlashCopy finishes after its
# leader's container is killed, a follower cut off the network catches up, a restart of all
# three keeps every byte, and `down -v` cleans up. Every wait is bounded. Runs with Compose v2
# (`docker compose`) or v1 (`docker-compose`). Skips, saying so, where no Docker engine answers
# or neither Compose is there; under FLASHCOPY_REQUIRE_ALL (set, not 0: CI sets it) that is a
# failure instead. A skip is also noted in the file FLASHCOPY_SKIP_LOG names, if set.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flashcopy-target}"
skip() {
  case "${FLASHCOPY_REQUIRE_ALL:-}" in
    "" | 0) ;;
    *)
      echo "compose test FAILED: $1 (FLASHCOPY_REQUIRE_ALL: no test may be skipped)" >&2
      exit 1
      ;;
  esac
  echo "compose test SKIPPED: $1"
  if [ -n "${FLASHCOPY_SKIP_LOG:-}" ]; then
    echo "compose test: $1" >>"$FLASHCOPY_SKIP_LOG"
  fi
  exit 0
}
if ! docker info >/dev/null 2>&1; then
  skip "no Docker engine answers here"
fi
if docker compose version >/dev/null 2>&1; then
  compose() { docker compose -p flashcopy-test "$@"; }
elif docker-compose version >/dev/null 2>&1; then
  compose() { docker-compose -p flashcopy-test "$@"; }
else
  skip "Docker answers, but neither docker compose (v2) nor docker-compose (v1) is installed"
fi
# The container of node N, whatever this compose version calls it.
container() { compose ps -q "node$1"; }
# Bounded, so a poll cannot outlast the wait around it.
fc() { timeout 15 "$CARGO_TARGET_DIR/debug/flashcopy" "$@"; }
# NBD clients, bounded too.
nbd_client() { timeout 300 "$@"; }
work="$(mktemp -d)"
cleanup() {
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "compose test FAILED: $*" >&2
  compose ps >&2 || true
  compose logs --tail=30 >&2 || true
  exit 1
}
# Polls a command for up to $1 seconds.
within() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out after ${seconds}s waiting for $what"
    sleep 1
  done
}
api() { echo "http://127.0.0.1:$((7700 + 10 * ($1 - 1)))"; }
nbd() { echo "nbd://127.0.0.1:$((10809 + 10 * ($1 - 1)))/$2"; }
on() { local n=$1; shift; FLASHCOPY_API="$(api "$n")" fc "$@"; }
status_json() { FLASHCOPY_API="$(api "$1")" fc cluster status --json; }
formed() { status_json 1 | python3 -c 'import json,sys; s=json.load(sys.stdin); n=s["nodes"]; sys.exit(0 if s["leader"] and len(n)==3 and all(m["role"]!="learner" and m["applied_index"] is not None for m in n) else 1)'; }
leader() { status_json "$1" | python3 -c 'import json,sys; l=json.load(sys.stdin)["leader"]; print(l); sys.exit(0 if l else 1)'; }
applied() { status_json "$1" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["applied_index"], s["digest"])'; }
out_of_sync() { on "$1" lsflash --json | python3 -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["source"]=="src"]; print(r[0]["out_of_sync_tracks"] if r else "none")'; }
copied() { [ "$(out_of_sync "$1")" = 0 ]; }
same_everywhere() {
  local a b c
  a=$(applied 1) && b=$(applied 2) && c=$(applied 3) && [ "$a" = "$b" ] && [ "$b" = "$c" ]
}

echo "compose test: building the image"
scripts/image --debug >/dev/null
export FLASHCOPY_TOKEN; FLASHCOPY_TOKEN="$(cat deploy/token)"
# A slow copy, so a leader can die in the middle of it (every `up` must see the same value, or
# compose recreates the containers).
export FLASHCOPY_COPY_RATE=4
up=$(compose up -d 2>&1) || fail "compose up: $up"
within 120 "the cluster to form" formed

echo "compose test: volumes and relationships through one node, seen through the others"
on 1 mkvol src --size 32M >/dev/null || fail "mkvol through node 1"
on 2 mkvol tgt --size 32M >/dev/null || fail "mkvol through node 2"
for n in 2 3; do
  vols=$(on "$n" lsvol --json) && [[ "$vols" == *'"name": "src"'* ]] || fail "node $n does not list src"
done

echo "compose test: NBD writes from the host verify through another node"
head -c $((32 << 20)) /dev/urandom > "$work/image"
nbd_client nbdcopy "$work/image" "$(nbd 2 src)" || fail "nbdcopy to node 2"
nbd_client qemu-img compare -f raw -F raw "$work/image" "$(nbd 3 src)" >/dev/null || fail "node 3 reads other bytes"

echo "compose test: the leader's container is killed in the middle of a copy"
on 1 mkflash src:tgt --persist >/dev/null || fail "mkflash"
rels=$(on 2 lsflash --json) && [[ "$rels" == *'"target": "tgt"'* ]] || fail "node 2 does not list the relationship"
sleep 2
[ "$(out_of_sync 1)" != 0 ] || fail "the copy finished before the kill"
dead=$(leader 1) || fail "no leader before the kill"
docker kill "$(container "$dead")" >/dev/null || fail "docker kill node $dead"
survivor=$(( dead % 3 + 1 ))
within 180 "the copy to finish under a new leader" copied "$survivor"
nbd_client qemu-img compare -f raw -F raw "$work/image" "$(nbd "$survivor" tgt)" >/dev/null || fail "the target is not the point in time"
up=$(compose up -d 2>&1) || fail "compose up after the kill: $up"
within 120 "the killed node to rejoin" same_everywhere

echo "compose test: a follower cut off the network during writes catches up"
current=$(leader 1) || fail "no leader before the disconnect"
follower=$(( current % 3 + 1 ))
cut=$(container "$follower")
docker network disconnect flashcopy-test_cluster "$cut" || fail "docker network disconnect"
writer=$(( follower % 3 + 1 ))
nbd_client qemu-io -f raw "$(nbd "$writer" src)" -c 'write -P 0x5a 0 8M' >/dev/null || fail "writes with a follower cut off"
docker network connect --alias "node${follower}" flashcopy-test_cluster "$cut" || fail "docker network connect"
within 120 "the cut-off follower to catch up (equal digests)" same_everywhere

echo "compose test: a restart of all three keeps every byte"
compose restart >/dev/null 2>&1 || fail "compose restart"
within 120 "the cluster to form again" formed
nbd_client qemu-io -f raw -r "$(nbd 3 src)" -c 'read -P 0x5a 0 8M' >/dev/null || fail "src lost its writes over the restart"
nbd_client qemu-img compare -f raw -F raw "$work/image" "$(nbd 1 tgt)" >/dev/null || fail "tgt changed over the restart"

echo "compose test: down -v removes the containers and their volumes"
compose down -v >/dev/null 2>&1 || fail "compose down -v"
[ -z "$(docker volume ls -q --filter name=flashcopy-test_)" ] || fail "volumes left behind"
echo "compose test passed"
