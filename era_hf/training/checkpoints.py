"""Resumable stage checkpoints under ``OUTPUT/checkpoints/<stage>/``.

Each stage directory holds

* ``model.safetensors`` -- the head's weights (``head.`` prefix-free state dict),
* ``config.json`` -- the :class:`~era_hf.ERAConfig` of the run so far,
* ``training_state.<id>.safetensors`` + ``training_state.json`` -- everything needed to continue:
  head and optimizer / scheduler state, completed epochs, history, best state and patience
  counter, RNG states, the stage's extra facts (e.g. the closed-form init) and a
  *compatibility record* (encoders, dims, every result-affecting argument). No pickle: tensors
  go to safetensors, the rest to JSON (:mod:`era_hf.training.state_io`).

All are written atomically (temp file + fsync + rename), ``training_state.json`` last: it is
the commit marker and the state is the only thing read on resume (it carries its own copy of the
head), so a kill at any moment leaves either the previous checkpoint or the new one.
Only the main process writes.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_path, atomic_write_text
from ..errors import ERAError
from .state_io import load_state, save_state

FORMAT = 3


class CheckpointMismatch(ERAError):
    """The checkpoints in an output directory cannot continue this run: unreadable, written by another
    era_hf version, or made with other settings. ``--overwrite`` (or another output) starts afresh."""


STAGES = ("alignment", "adaptation")
STATE = "training_state"


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]}


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))


class Checkpoints:
    """Reads and writes the stage checkpoints of one output directory."""

    def __init__(self, output_dir: str | Path, accelerator: Any = None) -> None:
        self.root = Path(output_dir) / "checkpoints"
        self.accelerator = accelerator

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def exists(self) -> bool:
        return any((self.stage_dir(s) / f"{STATE}.json").is_file() for s in STAGES)

    def clear(self) -> None:
        if self._is_main and self.root.exists():
            shutil.rmtree(self.root)
        self._wait()

    @property
    def _is_main(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    def _wait(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def load(self, stage: str) -> dict[str, Any] | None:
        try:
            state = load_state(self.stage_dir(stage), STATE)
        except ERAError as err:
            raise CheckpointMismatch(f"{err}; delete {self.root} or pass --overwrite") from None
        if state is None:
            return None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise CheckpointMismatch(f"checkpoint {self.stage_dir(stage)} has an unknown format; delete "
                                     f"{self.root} or pass --overwrite")
        return state

    def save(self, stage: str, state: dict[str, Any], config: Any) -> None:
        """Write a stage checkpoint (main process only; every process waits for it)."""
        self._wait()
        if self._is_main:
            from safetensors.torch import save_file

            directory = self.stage_dir(stage)
            directory.mkdir(parents=True, exist_ok=True)
            head = {k: v.detach().cpu().contiguous() for k, v in state["head"].items()}
            with atomic_path(directory / "model.safetensors") as tmp:
                save_file(head, str(tmp), metadata={"format": "pt", "stage": stage})
            atomic_write_text(directory / "config.json", config.to_json_string())
            save_state(directory, STATE, {**state, "format": FORMAT, "stage": stage})
        self._wait()


def check_compatible(saved: dict[str, Any], current: dict[str, Any], where: Path) -> None:
    """ERAError when a checkpoint was made with other encoders (dims) or other settings."""
    s_dims = (saved.get("query_dim"), saved.get("document_dim"))
    c_dims = (current.get("query_dim"), current.get("document_dim"))
    if s_dims != c_dims:
        raise CheckpointMismatch(
            f"checkpoint {where} holds a {s_dims[0]}->{s_dims[1]} head (query encoder "
            f"{saved.get('query_encoder')!r}, document encoder {saved.get('document_encoder')!r}) but the encoders "
            f"of this run give {c_dims[0]}-d queries and {c_dims[1]}-d documents ({current.get('query_encoder')!r}, "
            f"{current.get('document_encoder')!r}); use another --output or --overwrite")
    diffs = {k: (saved.get(k), current.get(k)) for k in sorted(set(saved) | set(current))
             if saved.get(k) != current.get(k)}
    if diffs:
        listed = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diffs.items())
        raise CheckpointMismatch(f"cannot resume from {where}: it was made with other settings ({listed}); "
                                 "rerun with the same settings, or use another --output / --overwrite")
