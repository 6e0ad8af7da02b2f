#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_idx.c into corpus/idx/ (run from anywhere; deterministic).

Valid IDX files of every element type and dimension count 1-4, plain and gzipped, a gzip file
larger than the reader's first chunk, and bad files of each kind the reader rejects. Crash
inputs found later are added next to these by hand, as regression seeds (crash-*)."""
import gzip
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "idx")
TYPES = {0x08: ("ubyte", "B"), 0x09: ("sbyte", "b"), 0x0B: ("short", ">h"), 0x0C: ("int", ">i"),
         0x0D: ("float", ">f"), 0x0E: ("double", ">d")}


def idx(dims, type_code=0x08, values=None, dimension_count=None):
    header = bytes([0, 0, type_code, len(dims) if dimension_count is None else dimension_count])
    header += b"".join(struct.pack(">I", d) for d in dims)
    if values is None:
        count = 1
        for d in dims:
            count *= d
        fmt = TYPES[type_code][1]
        values = b"".join(struct.pack(fmt, (i * 7) % 100) for i in range(count))
    return header + values


def gz(data):
    return gzip.compress(data, compresslevel=9, mtime=0)


def main():
    os.makedirs(HERE, exist_ok=True)
    seeds = {}
    for dims in ([10], [4, 5], [3, 2, 2], [2, 2, 2, 3]):
        name = "valid-ubyte-%dd" % len(dims)
        seeds[name] = idx(dims)
        seeds[name + ".gz"] = gz(idx(dims))
    for code, (type_name, _) in TYPES.items():
        if code != 0x08:  # other element types: valid IDX, rejected by this reader (unsigned bytes only)
            seeds["type-%s-3d" % type_name] = idx([2, 2, 2], code)
            seeds["type-%s-1d.gz" % type_name] = gz(idx([3], code))
    big = idx([3, 150, 150])  # 67,500 values: more than the reader's first 64 KiB chunk
    seeds["valid-ubyte-3d-big.gz"] = gz(big)
    seeds["valid-two-members.gz"] = gz(idx([3, 2, 2])[:10]) + gz(idx([3, 2, 2])[10:])
    seeds["bad-lying-header"] = idx([1 << 28, 8, 8], values=b"\x01\x02\x03")
    seeds["bad-lying-header.gz"] = gz(seeds["bad-lying-header"])
    seeds["bad-overflow"] = idx([0xFFFFFFFF] * 3, values=b"\x01")
    seeds["bad-over-limit.gz"] = gz(idx([1 << 16, 1 << 16, 2], values=b"\x01"))
    seeds["bad-zero-size"] = idx([3, 0, 2], values=b"")
    seeds["bad-zero-dimensions"] = idx([], values=b"\x01\x02")
    seeds["bad-five-dimensions"] = idx([1, 1, 1, 1, 2])
    seeds["bad-truncated-header"] = idx([3, 2, 2])[:6]
    seeds["bad-one-byte-short"] = idx([3, 2, 2])[:-1]
    seeds["bad-one-byte-short.gz"] = gz(idx([3, 2, 2])[:-1])
    seeds["bad-trailing-data"] = idx([3, 2, 2]) + b"\x07\x07"
    seeds["bad-magic"] = b"\x1f\x00" + idx([3, 2, 2])[2:]
    seeds["bad-empty"] = b""
    seeds["bad-gzip-cut"] = gz(big)[: len(gz(big)) // 2]
    crc = bytearray(gz(idx([3, 2, 2])))
    crc[-8] ^= 0xFF
    seeds["bad-gzip-crc"] = bytes(crc)
    seeds["bad-gzip-garbage-after"] = gz(idx([3, 2, 2])) + b"garbage"
    for name, data in seeds.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds), HERE))


if __name__ == "__main__":
    main()
