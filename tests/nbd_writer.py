"""A host that keeps writing through failures: the load of the cluster-failure tests.

usage: nbd_writer.py STOP_FILE VOLUME BLOCKS URI...

Writes 64 KiB blocks 0, 1, ..., BLOCKS-1, 0, ... of VOLUME, each filled with one byte value,
until STOP_FILE exists. A write that fails (its node died, stepped down, or forwarded to a dead
leader) is retried with the same value on the next URI until acknowledged, so every block ends
with the value of its last acknowledged write. Prints one line per acknowledged write:
"BLOCK VALUE", flushed at once, so the test can follow progress.
"""

import os
import sys
import time

import nbd

BLOCK = 65536


def connect(uris, start):
    """A handle on the first URI, from `start` on, that accepts a connection."""
    while True:
        for k in range(len(uris)):
            uri = uris[(start + k) % len(uris)]
            h = nbd.NBD()
            try:
                h.connect_uri(uri)
                return h, (start + k) % len(uris)
            except nbd.Error as e:
                print("writer: cannot connect to", uri, ":", e, file=sys.stderr, flush=True)
                del h
        time.sleep(0.2)


def main():
    stop_file, volume, blocks = sys.argv[1], sys.argv[2], int(sys.argv[3])
    uris = [u + "/" + volume for u in sys.argv[4:]]
    h, current = connect(uris, 0)
    n = 0
    while not os.path.exists(stop_file):
        block = n % blocks
        value = n % 250 + 1
        data = bytes([value]) * BLOCK
        while True:
            try:
                h.pwrite(data, block * BLOCK)
                break
            except nbd.Error as e:
                print("writer: write failed on", uris[current], ":", e, file=sys.stderr, flush=True)
                del h  # closes the connection
                h, current = connect(uris, current + 1)
        print(block, value, flush=True)
        n += 1


main()
