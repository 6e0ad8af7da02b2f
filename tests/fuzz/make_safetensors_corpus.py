#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_safetensors.c into corpus/safetensors/ (deterministic).

Valid files of every dtype the reader takes, scalars, empty tensors, metadata, a file with a
syncbn checksum (good-syncbn-written: written by sbn_safetensors_write, kept as it was), and bad
files of each kind the reader rejects."""
import json
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "safetensors")
SIZES = {"F32": 4, "F64": 8, "I64": 8, "I32": 4, "U8": 1}


def safetensors(tensors, metadata=None, pad=True, header_text=None):
    header, blob = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    text = (header_text or json.dumps(header, separators=(",", ":"))).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob


def values(dtype, count):
    return bytes((i * 37 + 11) % 256 for i in range(count * SIZES[dtype]))


def main():
    os.makedirs(HERE, exist_ok=True)
    seeds = {
        "good-one-f32": safetensors([("w", "F32", [2, 3], values("F32", 6))]),
        "good-every-dtype": safetensors([(d.lower(), d, [3], values(d, 3)) for d in SIZES]),
        "good-scalar-and-empty": safetensors([("n", "I64", [], values("I64", 1)), ("e", "F32", [0, 4], b"")]),
        "good-metadata": safetensors([("w", "F64", [1, 1, 2], values("F64", 2))], {"model": "convnet", "step": "7"}),
        "good-unpadded": safetensors([("w", "U8", [5], values("U8", 5))], pad=False),
        "good-state-dict": safetensors([("conv1.weight", "F32", [16, 1, 3, 3], values("F32", 144)),
                                        ("conv1.bias", "F32", [16], values("F32", 16)),
                                        ("bn1.num_batches_tracked", "I64", [], values("I64", 1))],
                                       {"format": "syncbn-checkpoint-1"}),
        "bad-empty": b"",
        "bad-short-length": b"\x10\x00\x00",
        "bad-length-past-end": struct.pack("<Q", 1 << 40) + b"{}",
        "bad-not-json": safetensors([], header_text="{\"a\":"),
        "bad-array": safetensors([], header_text="[1,2,3]"),
        "bad-dtype": safetensors([], header_text='{"w":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}') + b"\0\0",
        "bad-gap": safetensors([], header_text='{"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}') + b"\0\0",
        "bad-overlap": safetensors([], header_text='{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
                                                   '"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}') + b"\0\0\0",
        "bad-huge-shape": safetensors([], header_text='{"w":{"dtype":"F64","shape":[4294967296,4294967296,16],'
                                                      '"data_offsets":[0,8]}}') + b"\0" * 8,
        "bad-checksum": safetensors([("w", "F32", [1], values("F32", 1))], {"syncbn.checksum": "00000000"}),
        "bad-duplicate-name": safetensors([], header_text='{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                                          '"w":{"dtype":"U8","shape":[0],"data_offsets":[1,1]}}') + b"\0",
        "bad-metadata-number": safetensors([("w", "U8", [1], b"\0")], {"k": 1}),
    }
    for name, data in seeds.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
