"""Plain data across the sandbox's boundary: values as JSON plus arrays in an uncompressed .npz, never pickle.

Both sides use this module: the grader encodes the arguments of its calls and decodes what the student's
function returned; the runner inside the sandbox does the opposite. What may cross:

* torch tensors of dtype float32, float64, int64 or bool (as arrays, with `requires_grad` for arguments);
* int, float, bool, str, None, and tuples and lists of these;
* `vitsteps.ViTConfig` (as its fields) and `torch.nn.Linear` (as its sizes, weight and bias).

`decode` never trusts its input: before it builds anything it checks the whole tree (every node's shape, the
depth of the nesting, the number of parts) and the total size of what it would build, each use of an array
counted every time it is used, so a reply that names one large array 10,000 times is refused before a single
copy is made (`MAX_DECODED_BYTES`); it opens the .npz with `allow_pickle=False` after checking that each member
is stored uncompressed, so a hostile blob can neither run code nor inflate in memory. `measure` gives that total
without building, for a budget over many replies (`vitcourse.confine.sandbox.Limits.reply_mb`).

A frame on the wire is 4 bytes of big-endian length, 1 byte of kind (`J` JSON, `B` a blob) and the payload.
"""
from __future__ import annotations

import dataclasses
import io
import json
import struct
import sys
import zipfile
from typing import Any

import numpy as np

MAX_DEPTH = 6
MAX_NODES = 4096
MAX_ARRAYS = 256
MAX_ARRAY_BYTES = 64 * 1024 * 1024
MAX_FRAME = 80 * 1024 * 1024
MAX_DECODED_BYTES = 128 * 1024 * 1024  # what one decoded value may hold, each use of an array counted
MAX_STRING = 10_000
DTYPES = ("float32", "float64", "int64", "bool")
_HEADER = struct.Struct(">IB")


class WireError(ValueError):
    """A value that may not cross the boundary, or data from the other side that is not well formed."""


# ------------------------------------------------------------------------------------------ frames


def pack_frame(kind: bytes, payload: bytes) -> bytes:
    """One frame: length, kind, payload."""
    if len(payload) > MAX_FRAME:
        raise WireError(f"a frame of {len(payload)} bytes is larger than the {MAX_FRAME}-byte limit")
    return _HEADER.pack(len(payload), kind[0]) + payload


def unpack_header(header: bytes) -> tuple[int, bytes]:
    """(payload length, kind) of a frame header; raises `WireError` for a frame over the limit."""
    length, kind = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise WireError(f"the other side sent a frame of {length} bytes (limit {MAX_FRAME})")
    return length, bytes([kind])


HEADER_SIZE = _HEADER.size


def dumps(message: dict[str, Any]) -> bytes:
    """A JSON frame."""
    return pack_frame(b"J", json.dumps(message, separators=(",", ":"), allow_nan=False).encode())


# ------------------------------------------------------------------------------------------ values


def encode(value: Any) -> tuple[dict[str, Any], bytes]:
    """A value as (JSON tree, npz bytes).

    Raises:
        WireError: the value holds something that may not cross (see the module's docstring).
    """
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(value, arrays, 0)
    return tree, _npz(arrays)


def _encode(value: Any, arrays: dict[str, np.ndarray], depth: int) -> dict[str, Any]:
    torch = sys.modules.get("torch")  # a value can only hold tensors if torch was imported
    if depth > MAX_DEPTH:
        raise WireError(f"the value is nested deeper than {MAX_DEPTH} levels")
    if value is None:
        return {"t": "none"}
    if isinstance(value, bool):
        return {"t": "bool", "v": value}
    if isinstance(value, int):
        return {"t": "int", "v": str(int(value))}
    if isinstance(value, float):
        return {"t": "float", "v": repr(float(value))}
    if isinstance(value, str):
        return {"t": "str", "v": str(value)}
    if isinstance(value, (tuple, list)):
        return {"t": "tuple" if isinstance(value, tuple) else "list",
                "items": [_encode(item, arrays, depth + 1) for item in value]}
    if torch is not None and isinstance(value, torch.nn.Linear):
        node: dict[str, Any] = {"t": "linear", "in": int(value.in_features), "out": int(value.out_features),
                                "weight": _array(value.weight, arrays)}
        node["bias"] = _array(value.bias, arrays) if value.bias is not None else None
        return node
    if torch is not None and isinstance(value, torch.Tensor):
        return {"t": "tensor", "a": _array(value, arrays), "grad": bool(value.requires_grad)}
    if dataclasses.is_dataclass(value) and type(value).__name__ == "ViTConfig":
        fields = {field.name: _encode(getattr(value, field.name), arrays, depth + 1)
                  for field in dataclasses.fields(value)}
        return {"t": "vitconfig", "fields": fields}
    raise WireError(f"a value of type {type(value).__name__} cannot cross the boundary; return a tensor, "
                    f"a tuple of tensors, an int or a float")


def _array(tensor: Any, arrays: dict[str, np.ndarray]) -> str:
    import torch

    plain = torch.Tensor.detach(tensor)
    plain = torch.Tensor.cpu(plain)
    if plain.dtype not in (torch.float32, torch.float64, torch.int64, torch.bool):
        raise WireError(f"a tensor of dtype {plain.dtype} cannot cross the boundary; use float32, float64, "
                        f"int64 or bool")
    if len(arrays) >= MAX_ARRAYS:
        raise WireError(f"more than {MAX_ARRAYS} tensors in one value")
    key = f"a{len(arrays)}"
    copy = torch.Tensor.clone(plain, memory_format=torch.contiguous_format).resolve_conj().resolve_neg()
    arrays[key] = torch.Tensor.numpy(copy)  # as it is: a 0-d tensor stays 0-d (np.ascontiguousarray would not)
    return key


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def load_arrays(blob: bytes) -> dict[str, np.ndarray]:
    """The arrays of an npz blob from the other side, checked before numpy reads them (never pickle).

    Raises:
        WireError: not a zip of stored (uncompressed) .npy members of the allowed dtypes and sizes.
    """
    if not blob:
        return {}
    try:
        archive = zipfile.ZipFile(io.BytesIO(blob))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise WireError(f"the arrays are not a valid .npz ({error})") from None
    if len(members) > MAX_ARRAYS:
        raise WireError(f"more than {MAX_ARRAYS} arrays")
    total = 0
    for member in members:
        if member.compress_type != zipfile.ZIP_STORED or member.file_size != member.compress_size:
            raise WireError("a compressed array member; only stored members are read")
        total += member.file_size
    if total > MAX_ARRAY_BYTES or total > len(blob):
        raise WireError(f"the arrays hold more than {MAX_ARRAY_BYTES} bytes")
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as loaded:
            for name in loaded.files:
                array = loaded[name]
                if array.dtype.name not in DTYPES:
                    raise WireError(f"an array of dtype {array.dtype.name}; only {', '.join(DTYPES)} are read")
                arrays[name] = array
    except WireError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever numpy says about a malformed member
        raise WireError(f"the arrays cannot be read ({type(error).__name__})") from None
    return arrays


def _member_sizes(blob: bytes) -> dict[str, int]:
    """Array name -> bytes it holds (its stored .npy member, header included), read from the zip's directory only."""
    if not blob:
        return {}
    try:
        members = zipfile.ZipFile(io.BytesIO(blob)).infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise WireError(f"the arrays are not a valid .npz ({error})") from None
    if len(members) > MAX_ARRAYS:
        raise WireError(f"more than {MAX_ARRAYS} arrays")
    return {member.filename[:-4] if member.filename.endswith(".npy") else member.filename: member.file_size
            for member in members}


def measure(tree: Any, blob: bytes, limit: int = MAX_DECODED_BYTES) -> int:
    """The bytes `decode` would build from (tree, blob), each use of an array counted, after checking the whole
    tree; nothing is built.

    Raises:
        WireError: the tree is malformed, or it would build more than `limit` bytes.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ValueError(f"limit must be a positive number of bytes, got {limit!r}; e.g. {MAX_DECODED_BYTES}.")
    total = [0]
    _check(tree, _member_sizes(blob), 0, [0], total, limit)
    return total[0]


def _check(node: Any, sizes: dict[str, int], depth: int, counter: list[int], total: list[int], limit: int) -> None:
    """The shape `_decode` accepts, walked without building anything; adds what it would build to `total`."""
    counter[0] += 1
    if depth > MAX_DEPTH or counter[0] > MAX_NODES:
        raise WireError("the value is nested too deeply or has too many parts")
    if not isinstance(node, dict) or not isinstance(node.get("t"), str):
        raise WireError("a malformed value")
    kind = node["t"]
    references: list[Any] = []
    if kind in ("none",) or (kind == "bool" and isinstance(node.get("v"), bool)):
        pass
    elif kind in ("int", "float") and isinstance(node.get("v"), str) and len(node["v"]) <= 40:
        pass
    elif kind == "str" and isinstance(node.get("v"), str) and len(node["v"]) <= MAX_STRING:
        total[0] += len(node["v"])
    elif kind in ("tuple", "list") and isinstance(node.get("items"), list):
        if len(node["items"]) > MAX_NODES:
            raise WireError("the value is nested too deeply or has too many parts")
        for item in node["items"]:
            _check(item, sizes, depth + 1, counter, total, limit)
    elif kind == "tensor":
        references = [node.get("a")]
    elif kind == "linear":
        references = [node.get("weight")] + ([node["bias"]] if node.get("bias") is not None else [])
    elif kind == "vitconfig" and isinstance(node.get("fields"), dict):
        if len(node["fields"]) > 64:
            raise WireError("a ViTConfig with too many fields")
        for value in node["fields"].values():
            _check(value, sizes, depth + 1, counter, total, limit)
    else:
        raise WireError(f"a value of kind {str(kind)[:40]!r} is not read")
    for key in references:
        if not isinstance(key, str) or key not in sizes:
            raise WireError("a tensor refers to an array that is not there")
        total[0] += sizes[key] * (2 if kind == "linear" else 1)  # a layer holds its parameters and their copy
    if total[0] > limit:
        raise WireError(f"the value would hold more than {limit // (1024 * 1024)} MiB once decoded (each use of "
                        f"an array counts)")


def decode(tree: Any, blob: bytes, *, linear_grad: bool = True, limit: int = MAX_DECODED_BYTES) -> Any:
    """The value a (JSON tree, npz bytes) pair describes, built from plain torch objects, after the whole tree
    and its decoded size (at most `limit` bytes, see `measure`) are checked.

    Raises:
        WireError: the tree or the arrays are malformed, hold something that may not cross, or would build
            more than `limit` bytes.
    """
    measure(tree, blob, limit)
    arrays = load_arrays(blob)
    counter = [0]
    return _decode(tree, arrays, 0, counter, linear_grad)


def _decode(node: Any, arrays: dict[str, np.ndarray], depth: int, counter: list[int], linear_grad: bool) -> Any:
    counter[0] += 1
    if depth > MAX_DEPTH or counter[0] > MAX_NODES:
        raise WireError("the value is nested too deeply or has too many parts")
    if not isinstance(node, dict) or not isinstance(node.get("t"), str):
        raise WireError("a malformed value")
    kind = node["t"]
    if kind == "none":
        return None
    if kind == "bool" and isinstance(node.get("v"), bool):
        return node["v"]
    if kind == "int" and isinstance(node.get("v"), str) and len(node["v"]) <= 40:
        try:
            return int(node["v"])
        except ValueError:
            raise WireError("a malformed int") from None
    if kind == "float" and isinstance(node.get("v"), str) and len(node["v"]) <= 40:
        try:
            return float(node["v"])
        except ValueError:
            raise WireError("a malformed float") from None
    if kind == "str" and isinstance(node.get("v"), str) and len(node["v"]) <= MAX_STRING:
        return node["v"]
    if kind in ("tuple", "list") and isinstance(node.get("items"), list):
        items = [_decode(item, arrays, depth + 1, counter, linear_grad) for item in node["items"]]
        return tuple(items) if kind == "tuple" else items
    if kind == "tensor":
        import torch

        tensor = torch.from_numpy(_take(arrays, node.get("a")).copy())
        if node.get("grad") is True and tensor.is_floating_point():
            tensor.requires_grad_(True)
        return tensor
    if kind == "linear":
        import torch

        sizes = (node.get("in"), node.get("out"))
        if not all(isinstance(size, int) and not isinstance(size, bool) and 0 < size <= 1 << 20 for size in sizes):
            raise WireError("a malformed nn.Linear")
        weight = torch.from_numpy(_take(arrays, node.get("weight")).copy())
        bias = None if node.get("bias") is None else torch.from_numpy(_take(arrays, node["bias"]).copy())
        if tuple(weight.shape) != (sizes[1], sizes[0]) or (bias is not None and tuple(bias.shape) != (sizes[1],)):
            raise WireError("an nn.Linear whose weight or bias does not match its sizes")
        layer = torch.nn.Linear(sizes[0], sizes[1], bias=bias is not None, dtype=weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias)
        layer.requires_grad_(linear_grad)
        return layer
    if kind == "vitconfig" and isinstance(node.get("fields"), dict):
        from vitsteps import ViTConfig

        names = {field.name for field in dataclasses.fields(ViTConfig)}
        fields = {}
        for name, value in node["fields"].items():
            if name not in names:
                raise WireError(f"ViTConfig has no field {name!r}")
            fields[name] = _decode(value, arrays, depth + 1, counter, linear_grad)
        try:
            return ViTConfig(**fields)
        except (TypeError, ValueError) as error:
            raise WireError(f"an invalid ViTConfig ({error})") from None
    raise WireError(f"a value of kind {kind!r} is not read")


def _take(arrays: dict[str, np.ndarray], key: Any) -> np.ndarray:
    if not isinstance(key, str) or key not in arrays:
        raise WireError("a tensor refers to an array that is not there")
    return arrays[key]
