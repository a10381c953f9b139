"""Minimal safetensors reader/writer (the safetensors package is not installed here).

Format: 8-byte little-endian header length, JSON header {name: {dtype, shape, data_offsets}, "__metadata__":
{str: str}}, then the raw little-endian tensor bytes. Tensors are written ordered by dtype then name.
"""
import json
import os
import struct

import numpy as np
import torch

_DT = {torch.float32: ("F32", np.float32), torch.float16: ("F16", np.float16), torch.int64: ("I64", np.int64)}
_NP = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "BF16": None}
_ORDER = {"I64": 0, "F32": 1, "F16": 2}


def save(path, tensors, metadata=None):
    items = []
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        code, npdt = _DT[t.dtype]
        items.append((name, code, list(t.shape), t.numpy().astype(npdt).tobytes()))
    items.sort(key=lambda x: (_ORDER[x[1]], x[0]))
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    off = 0
    for name, code, shape, raw in items:
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    tmp = path + ".tmp-write"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for _, _, _, raw in items:
            f.write(raw)
    os.replace(tmp, path)


def load(path):
    """Returns (dict name -> float32/int64 torch tensor, metadata dict)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        meta = header.pop("__metadata__", {})
        out = {}
        for name, h in header.items():
            a, b = h["data_offsets"]
            f.seek(base + a)
            arr = np.frombuffer(f.read(b - a), dtype=_NP[h["dtype"]]).reshape(h["shape"])
            t = torch.from_numpy(arr.copy())
            if t.dtype == torch.float16:
                t = t.float()
            out[name] = t
    return out, meta
