"""Training state without pickle: tensors in safetensors, everything else in JSON.

Optimizer states, RNG states and loop histories are nested dicts / lists / tuples with tensors
inside. They are split into ``<name>.<id>.safetensors`` (every tensor, under a generated key) and
``<name>.json`` (the structure, with ``{"__tensor__": key}`` placeholders; tuples and non-string
dict keys are tagged so they come back with their types).

The JSON file is written last and is the commit marker: it names the tensor file of *its* save (a
fresh name each time) with that file's sha256. A process killed between the two writes leaves the
previous JSON pointing at the previous tensor file, never a new structure over old tensors or the
reverse; the orphaned tensor file is removed by the next save.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_bytes, atomic_write_text
from ..errors import ERAError


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ERAError(f"cannot store a {type(obj).__name__} in a training state")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        return {k: _decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def save_state(directory: str | Path, name: str, state: dict[str, Any]) -> None:
    """Write ``name.<id>.safetensors`` then ``name.json`` (the commit marker), each atomically."""
    from safetensors.torch import save

    directory = Path(directory)
    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(state, tensors)
    data = save(tensors)  # hashed and written from memory: the file is never read back
    tensor_file = directory / f"{name}.{uuid.uuid4().hex[:12]}.safetensors"
    atomic_write_bytes(tensor_file, data)
    record = {"tensors": tensor_file.name, "sha256": hashlib.sha256(data).hexdigest(), "state": structure}
    atomic_write_text(directory / f"{name}.json", json.dumps(record))
    for stale in directory.glob(f"{name}.*.safetensors"):
        if stale != tensor_file:
            stale.unlink(missing_ok=True)


def load_state(directory: str | Path, name: str) -> dict[str, Any] | None:
    """Read a state written by :func:`save_state`; None when there is none (no JSON marker)."""
    from safetensors.torch import load

    directory = Path(directory)
    marker = directory / f"{name}.json"
    if not marker.is_file():
        return None
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not {"tensors", "sha256", "state"} <= set(record):
            raise ValueError("not a state written by this era_hf version")
        tensor_file = directory / Path(record["tensors"]).name
        data = tensor_file.read_bytes()  # read once: checked, then decoded
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise ValueError(f"{tensor_file.name} does not match its recorded sha256")
        return _decode(record["state"], load(data))
    except Exception as err:  # damaged JSON / safetensors / missing tensor keys
        raise ERAError(f"training state {marker} cannot be read ({err})") from None
