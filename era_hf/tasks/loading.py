"""`load_task` / `load_suite`: one entry point for every kind of task spec.

Accepted specs:

* ``builtin:stdlib-code`` -- code search over the Python standard library;
* a directory in BEIR layout (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``);
* ``mair:<Task>[/<group>]`` or ``MAIR-Bench/[MAIR-Queries/]<Task>`` -- a MAIR task from the Hub;
* ``BeIR/<name>`` -- a BEIR dataset from the Hub (with ``BeIR/<name>-qrels``).

Example:
    >>> [t.name for t in load_suite("../shared/data")]  # doctest: +SKIP
    ['adi', 'cisi', 'cranfield', 'medline', 'vaswani']
    >>> load_task("builtin:stdlib-code").domain  # doctest: +SKIP
    'code'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from era_hf.errors import ERAError
from era_hf.tasks.beir import LAYOUT, is_beir_dir, load_beir_dir, load_beir_hub, looks_like_beir_dir
from era_hf.tasks.mair import load_mair
from era_hf.tasks.stdlib_code import STDLIB_CODE_SPEC, build_stdlib_code_task
from era_hf.tasks.task import RetrievalTask

__all__ = ["ACCEPTED_SPECS", "load_suite", "load_task"]

ACCEPTED_SPECS = (
    f"{STDLIB_CODE_SPEC!r}; a BEIR task directory (corpus.jsonl, queries.jsonl, qrels/<split>.tsv); "
    "'mair:<Task>' or 'MAIR-Bench/<Task>' (a MAIR task on the Hub); 'BeIR/<name>' (a BEIR dataset on the Hub)"
)


def _only_test_split(spec: str, split: str) -> None:
    if split != "test":
        raise ERAError(f"{spec!r} has only a 'test' split, got split={split!r}")


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or (os.sep in spec and not spec.startswith(("BeIR/", "MAIR-Bench/")))


def _not_a_directory(spec: str) -> str:
    """The message for a spec that names a file: it is not a task directory, and which folder may be meant."""
    path = Path(spec)
    candidates = [path.parent, path.parent.parent] if path.parent.name == "qrels" else [path.parent]
    folder = next((c for c in candidates if is_beir_dir(c)), None)
    hint = f"; did you mean its folder {str(folder)!r}?" if folder is not None else ""
    return f"{spec!r} is a file, not a task directory (a task directory holds {LAYOUT}){hint}"


def load_task(spec: str, *, split: str = "test", revision: str | None = None) -> RetrievalTask:
    """Load one task from ``spec`` (see the module docstring for the forms).

    ``split`` picks the qrels file of a BEIR directory / the qrels split of a
    BEIR Hub dataset (MAIR and the builtin task only have ``test``);
    ``revision`` pins a Hub dataset (ignored for local and builtin tasks,
    whose ``revision`` is a content hash / the Python version).

    Raises:
        ERAError: an unrecognised spec (listing the accepted forms), a missing
            directory, malformed data, or an unreachable Hub.
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise ERAError(f"task spec must be a string or path, got {type(spec).__name__}")
    spec = os.fspath(spec)
    if spec == STDLIB_CODE_SPEC:
        _only_test_split(spec, split)
        return build_stdlib_code_task()
    if os.path.isdir(spec):
        return load_beir_dir(spec, split=split)
    if spec.startswith(("mair:", "MAIR-Bench/")):
        _only_test_split(spec, split)
        return load_mair(spec, revision=revision)
    if spec.startswith("BeIR/") and spec.count("/") == 1 and len(spec) > len("BeIR/"):
        return load_beir_hub(spec, split=split, revision=revision)
    if os.path.exists(spec):
        raise ERAError(_not_a_directory(spec))
    if _looks_like_path(spec):
        raise ERAError(f"task directory {spec!r} does not exist; accepted specs: {ACCEPTED_SPECS}")
    raise ERAError(f"unrecognised task spec {spec!r}; accepted: {ACCEPTED_SPECS}")


def _suite_dir_specs(directory: Path) -> list[str]:
    """Task subdirectories of ``directory`` (incomplete ones too: loading them names what they lack), by name."""
    specs = sorted(str(p) for p in directory.iterdir() if looks_like_beir_dir(p))
    if not specs:
        raise ERAError(
            f"{directory}: neither a task directory (no corpus.jsonl) nor a suite of task directories "
            f"(no subdirectory holds corpus.jsonl); a task directory holds {LAYOUT}"
        )
    return specs


def load_suite(specs: Sequence[str] | str, *, split: str = "test") -> list[RetrievalTask]:
    """Load several tasks: a directory of task directories (sorted), one spec, or a list of specs.

    A directory holding ``corpus.jsonl``, ``queries.jsonl`` or ``qrels`` is one task (an incomplete one
    is refused naming what it lacks); another directory is a suite of the subdirectories that hold them.

    Raises:
        ERAError: no tasks, a directory that is neither a task nor a suite, or two tasks with the same name.
    """
    if isinstance(specs, (str, os.PathLike)):
        spec = os.fspath(specs)
        specs = _suite_dir_specs(Path(spec)) if os.path.isdir(spec) and not looks_like_beir_dir(spec) else [spec]
    specs = list(specs)
    if not specs:
        raise ERAError("load_suite: no task specs given")
    tasks: list[RetrievalTask] = []
    origin: dict[str, str] = {}
    for spec in specs:
        task = load_task(spec, split=split)
        if task.name in origin:
            raise ERAError(f"duplicate task name {task.name!r}: from {origin[task.name]!r} and {spec!r}")
        origin[task.name] = spec
        tasks.append(task)
    return tasks
