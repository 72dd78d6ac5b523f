"""Fetching from the Hugging Face Hub with errors a user can act on.

:func:`hub_load` wraps ``datasets.load_dataset`` and turns connection,
offline-mode, not-found and bad-config errors into :class:`ERAError`.  Loaders
keep fetching (here) apart from converting rows (pure functions in
:mod:`~era_hf.tasks.beir` and :mod:`~era_hf.tasks.mair`), so the conversion is
tested on local files in the Hub schemas.

Example:
    >>> rows = hub_load("BeIR/scifact", "queries", split="queries")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import datasets

from era_hf.errors import ERAError

__all__ = ["OFFLINE_HINT", "hub_load", "hub_revision"]

OFFLINE_HINT = (
    "the Hugging Face Hub cannot be reached (no network, or HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set and the "
    "dataset is not in the local cache); download it once while online, or use a local BEIR directory instead"
)


def _connection_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "the Hub could not be reached" (whatever the installed versions)."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from huggingface_hub import errors as hub_errors
    except ImportError:  # pragma: no cover - huggingface_hub always comes with datasets
        return tuple(found)
    for name in ("OfflineModeIsEnabled", "LocalEntryNotFoundError"):
        if hasattr(hub_errors, name):
            found.append(getattr(hub_errors, name))
    return tuple(found)


def _not_found_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    try:
        from datasets.exceptions import DatasetNotFoundError

        found.append(DatasetNotFoundError)
    except ImportError:  # pragma: no cover
        pass
    try:
        from huggingface_hub import errors as hub_errors

        found += [
            getattr(hub_errors, n)
            for n in ("RepositoryNotFoundError", "RevisionNotFoundError")
            if hasattr(hub_errors, n)
        ]
    except ImportError:  # pragma: no cover
        pass
    return tuple(found)


def hub_load(repo: str, config: str | None = None, *, split: str | None = None, revision: str | None = None) -> Any:
    """``datasets.load_dataset(repo, config, split=split, revision=revision)`` or an ERAError.

    Raises:
        ERAError: the Hub cannot be reached (offline), the dataset / revision does
            not exist, or the config / split is unknown.
    """
    what = f"{repo!r}" + (f" config {config!r}" if config else "") + (f" split {split!r}" if split else "")
    if revision:
        what += f" at revision {revision!r}"
    try:
        return datasets.load_dataset(repo, config, split=split, revision=revision)
    except _connection_errors() as err:
        raise ERAError(f"cannot load {what}: {OFFLINE_HINT} ({type(err).__name__}: {err})") from None
    except _not_found_errors() as err:
        raise ERAError(f"cannot load {what}: not found on the Hugging Face Hub ({err})") from None
    except ValueError as err:  # unknown config or split
        raise ERAError(f"cannot load {what}: {err}") from None


def hub_revision(repo: str, requested: str | None) -> str | None:
    """The commit sha of ``repo`` at ``requested`` if the Hub answers, else ``requested``.

    Best effort (never raises): used only to record which data a run saw.
    """
    try:
        from huggingface_hub import HfApi, constants

        if constants.HF_HUB_OFFLINE:
            return requested
        return HfApi().dataset_info(repo, revision=requested).sha or requested
    except Exception:
        return requested
