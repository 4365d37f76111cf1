"""Resumable training state in one safetensors file: tensors there, everything else as JSON metadata.

Optimizer and scheduler state dicts are nested Python structures with tensors inside; we flatten the
tensors into safetensors and keep the skeleton as JSON, so resuming never unpickles anything.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import CheckpointError
from ..io import atomic_write

_TENSOR = "__tensor__"


def flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors in a nested structure by references, collecting them into `tensors`."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {_TENSOR: prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[flatten(k, f"{prefix}.k{i}", tensors), flatten(v, f"{prefix}.{i}", tensors)] for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)], "tuple": isinstance(obj, tuple)}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    return obj


def unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if "__dict__" in obj:
            return {unflatten(k, tensors): unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [unflatten(v, tensors) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
        if "__ndarray__" in obj:
            return np.array(obj["__ndarray__"], dtype=obj["dtype"])
    return obj


def rng_state() -> dict[str, Any]:
    st = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_st = st["numpy"]
    np.random.set_state((np_st[0], np.asarray(np_st[1], dtype=np.uint32), *np_st[2:]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(st["cuda"]))


def save_state(path: str | Path, parts: dict[str, Any]) -> Path:
    """Atomically write a dict of (nested) state parts to one safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = {name: flatten(value, name, tensors) for name, value in parts.items()}
    meta = {"skeleton": json.dumps(skeleton)}
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))


def load_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            skeleton = json.loads(fh.metadata()["skeleton"])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no training state to resume from") from None
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable training state ({type(exc).__name__}: {exc})") from None
    return {name: unflatten(value, tensors) for name, value in skeleton.items()}


def open_run(out: str | Path, state_name: str, resume: bool, what: str = "run") -> tuple[Path, bool]:
    """The run folder (checked writable before any work) and whether this run resumes: `--resume` without a completed
    epoch starts afresh, saying so; a folder holding a run's state without `--resume` is refused, never overwritten."""
    import sys

    from ..errors import ConfigError
    from ..io import check_writable_dir

    run = check_writable_dir(out, "--out")
    state = run / state_name
    if resume and not state.is_file():
        if not run.is_dir():
            raise ConfigError(f"{run}: nothing to resume (no such run folder); run without --resume")
        print(f"{run}: no completed epoch to resume from; starting from epoch 1", file=sys.stderr)
        resume = False
    if not resume and state.is_file():
        raise ConfigError(f"{run} already holds a {what}; pass --resume to continue it or choose another --out")
    return run, resume
