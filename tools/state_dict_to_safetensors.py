#!/usr/bin/python3
"""Writes a PyTorch state dict as a safetensors file that `syncbn train --init`
and `syncbn eval --weights` read. Only numpy and json: Debian's PyTorch has
no safetensors package.

    /usr/bin/python3 tools/state_dict_to_safetensors.py model.pt model.safetensors

model.pt is anything torch.load returns a state dict from (torch.save(model.state_dict(), ...)).
"""
import json
import struct
import sys

import numpy as np
import torch

DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}


def write_safetensors(state_dict, path):
    header, blobs, offset = {}, [], 0
    for name, tensor in state_dict.items():
        if tensor.dtype not in DTYPES:
            raise SystemExit(f"{name}: dtype {tensor.dtype} is not one syncbn reads")
        array = np.ascontiguousarray(tensor.detach().cpu().numpy())
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    state = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
    write_safetensors(state, sys.argv[2])
