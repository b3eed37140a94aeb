"""Sustained host writes of mixed sizes, and the check of what survived a crash.

usage: nbd_sustained.py write LOG STOP_FILE URI WRITERS REGION
       nbd_sustained.py verify LOG URI WRITERS REGION

write: WRITERS threads, each with its own NBD connection and its own REGION bytes of the
volume, write until STOP_FILE exists: sizes 512 B, 4 KiB, 64 KiB and 1 MiB at offsets aligned
to their size (so writes cover parts of blocks, whole blocks, whole tracks and many tracks),
each filled with one byte value. Before a write is sent, "W WRITER OFFSET LENGTH VALUE" goes
to LOG; once it is acknowledged, "A WRITER". A writer whose connection fails stops.

verify: rebuilds each region from LOG — every acknowledged write in order; the one write a
writer had in flight may or may not have landed — reads the volume and checks that every byte
is as expected. Exits 1 with the first difference.
"""

import os
import random
import sys
import threading

import nbd

SIZES = [512, 4096, 65536, 1 << 20]


def writer(k, uri, region, stop_file, log, lock):
    h = nbd.NBD()
    h.connect_uri(uri)
    rng = random.Random(k)
    base = k * region
    value = 0
    while not os.path.exists(stop_file):
        size = rng.choice(SIZES)
        offset = base + rng.randrange(region // size) * size
        value = value % 255 + 1
        with lock:
            log.write("W %d %d %d %d\n" % (k, offset, size, value))
            log.flush()
        try:
            h.pwrite(bytes([value]) * size, offset)
        except nbd.Error as e:
            print("writer %d stops: %s" % (k, e), file=sys.stderr, flush=True)
            return
        with lock:
            log.write("A %d\n" % k)
            log.flush()


def write(log_path, stop_file, uri, writers, region):
    lock = threading.Lock()
    with open(log_path, "a") as log:
        threads = [
            threading.Thread(target=writer, args=(k, uri, region, stop_file, log, lock))
            for k in range(writers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def verify(log_path, uri, writers, region):
    # Per writer: the acknowledged writes in order, and the one in flight (if any).
    acked = [[] for _ in range(writers)]
    pending = [None] * writers
    with open(log_path) as log:
        for line in log:
            parts = line.split()
            if not parts or (parts[0] == "W" and len(parts) < 5):
                continue  # a line cut short by the kill
            k = int(parts[1])
            if parts[0] == "W":
                pending[k] = tuple(int(p) for p in parts[2:5])
            elif parts[0] == "A" and pending[k] is not None:
                acked[k].append(pending[k])
                pending[k] = None
    h = nbd.NBD()
    h.connect_uri(uri)
    total = 0
    for k in range(writers):
        base = k * region
        expected = bytearray(region)
        for offset, size, value in acked[k]:
            expected[offset - base : offset - base + size] = bytes([value]) * size
        with_pending = None
        if pending[k] is not None:
            offset, size, value = pending[k]
            with_pending = bytearray(expected)
            with_pending[offset - base : offset - base + size] = bytes([value]) * size
        actual = bytearray()
        for at in range(0, region, 32 << 20):
            actual += h.pread(min(32 << 20, region - at), base + at)
        if actual != expected and (with_pending is None or actual != with_pending):
            first = next(i for i in range(region) if actual[i] != expected[i])
            print(
                "writer %d: byte %d is %d, expected %d (%d acknowledged writes, in flight: %s)"
                % (k, base + first, actual[first], expected[first], len(acked[k]), pending[k]),
                file=sys.stderr,
            )
            sys.exit(1)
        total += len(acked[k])
    print("verified %d acknowledged writes" % total)


def main():
    mode = sys.argv[1]
    if mode == "write":
        write(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    elif mode == "verify":
        verify(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit("usage: nbd_sustained.py write|verify ...")


if __name__ == "__main__":
    main()
