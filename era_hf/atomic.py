"""Atomic file writes: a temp file in the target directory, fsync, then rename.

A process killed at any point leaves either the previous file or the new one,
never a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)


def _publish(tmp: str | os.PathLike, target: Path) -> None:
    # mkstemp creates 0600 files; give the result the permissions a plain open() would.
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, target)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file beside ``path``; on a clean exit it replaces ``path`` atomically.

    Example:
        >>> with atomic_open("out.json") as f:  # doctest: +SKIP
        ...     f.write("{}")
    """
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, sort_keys=False) + "\n")


def atomic_path(path: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """Yield a temp path beside ``path`` for writers that need a filename (faiss, numpy, safetensors)."""

    @contextlib.contextmanager
    def _cm() -> Iterator[Path]:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            yield Path(tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            _publish(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    return _cm()


def require_directory(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path, or an ERAError saying that ``what`` (e.g. ``"model directory"``) does not exist or is a
    file."""
    from .errors import ERAError

    target = Path(path).expanduser()
    if not target.exists():
        raise ERAError(f"{what} {str(target)!r} does not exist")
    if not target.is_dir():
        raise ERAError(f"{what} {str(target)!r} is a file, not a directory")
    return target


def check_writable(path: str | os.PathLike, what: str, *, directory: bool = False) -> Path:
    """``path`` as a Path, or an ERAError naming ``what`` (e.g. ``"--output"``) when it cannot be written.

    Called before any work starts, so a wrong output path costs nothing. ``directory=False``: a file path that is
    not a directory, in a folder that exists or can be made and is writable. ``directory=True``: a folder (made
    when missing) that is writable. Folders it makes stay.

    Example:
        >>> check_writable("", "--output")
        Traceback (most recent call last):
        era_hf.errors.ERAError: --output is empty: give a path
    """
    from .errors import ERAError

    if not str(path).strip():
        raise ERAError(f"{what} is empty: give a path")
    target = Path(path).expanduser()
    if directory and target.exists() and not target.is_dir():
        raise ERAError(f"{what} {str(target)!r} is a file, not a directory")
    if not directory and target.is_dir():
        raise ERAError(f"{what} {str(target)!r} is a directory; give a file path")
    folder = target if directory else target.parent
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ERAError(f"{what} {str(target)!r} cannot be written: {str(blocker)!r} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".era-write-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ERAError(f"{what} {str(target)!r} cannot be written: {err.strerror or err}") from None
    return target


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
