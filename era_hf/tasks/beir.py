"""BEIR-format tasks: a local directory, or ``BeIR/<name>`` on the Hugging Face Hub.

Directory layout (as in ``../shared/data/<name>``)::

    corpus.jsonl      {"_id": str, "title": str (optional), "text": str}
    queries.jsonl     {"_id": str, "text": str (not blank), "instruction": str (optional)}
    qrels/<split>.tsv query-id<TAB>corpus-id<TAB>score   (optional header: a first line whose score is not a number)
    meta.json         optional: {"name", "domain", "instruction", "sha256": {file: hex}}

Hub layout: ``BeIR/<name>`` with configs ``corpus`` (split ``corpus``: ``_id``,
``title``, ``text``) and ``queries`` (split ``queries``: ``_id``, ``text``), and
``BeIR/<name>-qrels`` (split ``test``: ``query-id``, ``corpus-id``, ``score``).

``revision`` of a directory task is ``"sha256:"`` + the SHA-256 of the three data
files' hashes (so any edit changes it); a ``meta.json`` ``sha256`` block that
disagrees with the files only warns.

Example:
    >>> task = load_beir_dir("../shared/data/adi")  # doctest: +SKIP
    >>> task.name, task.corpus.num_rows, len(task.judged_query_ids())  # doctest: +SKIP
    ('adi', 82, 35)
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from era_hf.errors import ERAError
from era_hf.tasks.build import Qrel, Record, assemble_task, coerce_id, coerce_score, coerce_text, require
from era_hf.atomic import sha256_file
from era_hf.tasks.files import QRELS_HEADER, check_unicode, read_jsonl, read_qrels_tsv
from era_hf.tasks.hub import hub_load, hub_revision
from era_hf.tasks.task import RetrievalTask

__all__ = [
    "BEIR_DOMAINS",
    "DEFAULT_INSTRUCTION",
    "beir_task_from_rows",
    "doc_record",
    "is_beir_dir",
    "looks_like_beir_dir",
    "load_beir_dir",
    "load_beir_hub",
    "query_record",
]

DEFAULT_INSTRUCTION = "Given a query, retrieve the documents that answer it."
#: The files of a BEIR task directory, as error messages name them.
LAYOUT = "corpus.jsonl, queries.jsonl and qrels/<split>.tsv"

#: Domains of the public BEIR datasets (from the BEIR paper, Thakur et al. 2021).
BEIR_DOMAINS = {
    "msmarco": "misc", "trec-covid": "bio-medical", "nfcorpus": "bio-medical", "nq": "wikipedia",
    "hotpotqa": "wikipedia", "fiqa": "finance", "arguana": "misc", "webis-touche2020": "misc",
    "cqadupstack": "stackexchange", "quora": "quora", "dbpedia-entity": "wikipedia", "scidocs": "scientific",
    "fever": "wikipedia", "climate-fever": "wikipedia", "scifact": "scientific",
}  # fmt: skip


def doc_record(location: str, row: Mapping[str, Any]) -> Record:
    """A corpus row (``_id``, optional ``title``, ``text``) checked and normalised."""
    return location, {
        "_id": coerce_id(require(row, "_id", location), location, "_id"),
        "title": coerce_text(row, "title", location, required=False),
        "text": coerce_text(row, "text", location, required=True),
    }


def query_record(location: str, row: Mapping[str, Any]) -> Record:
    """A query row (``_id``, ``text``, optional ``instruction``) checked and normalised.

    A query's text must not be empty or blank (there is nothing to search for).  A document's may be:
    BEIR corpora hold documents with a title and no text, and ``../shared/data/cranfield`` two with neither.
    """
    query_id = coerce_id(require(row, "_id", location), location, "_id")
    text = coerce_text(row, "text", location, required=True)
    if not text.strip():
        raise ERAError(f"{location}: query {query_id!r} has {'a blank' if text else 'an empty'} 'text' "
                       "(a query needs words to search for)")
    return location, {
        "_id": query_id,
        "text": text,
        "instruction": coerce_text(row, "instruction", location, required=False),
    }


# -- local directory --------------------------------------------------------
def is_beir_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a directory holding ``corpus.jsonl``."""
    return Path(path, "corpus.jsonl").is_file()


def looks_like_beir_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a directory holding any of ``corpus.jsonl``, ``queries.jsonl``, ``qrels``: a task
    directory, maybe incomplete (loading it then names what is missing)."""
    names = ("corpus.jsonl", "queries.jsonl", "qrels")
    return Path(path).is_dir() and any(Path(path, name).exists() for name in names)


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / "meta.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as err:
        raise ERAError(f"{path}: not valid UTF-8 ({err.reason})") from None
    except json.JSONDecodeError as err:
        raise ERAError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(meta, dict):
        raise ERAError(f"{path}: expected a JSON object")
    for key in ("name", "domain", "instruction"):
        if key in meta and not isinstance(meta[key], str):
            raise ERAError(f"{path}: {key!r} must be a string")
    check_unicode({k: meta[k] for k in ("name", "domain", "instruction") if k in meta}, str(path))
    return meta


def _layout(directory: Path, split: str) -> tuple[Path, Path, Path]:
    """The three data files of a task directory, checked up front: ERAError naming the directory and
    each missing file (or a path that is not a file)."""
    if not directory.is_dir():
        what = "it is a file" if directory.exists() else "it does not exist"
        raise ERAError(f"{directory}: not a BEIR task directory ({what}); a task directory holds {LAYOUT}")
    files = (directory / "corpus.jsonl", directory / "queries.jsonl", directory / "qrels" / f"{split}.tsv")
    for path in files:
        if path.exists() and not path.is_file():
            kind = "a directory" if path.is_dir() else "not a regular file"
            raise ERAError(f"{path} is not a file ({kind}); a BEIR task directory holds the files {LAYOUT}")
    missing = [p.relative_to(directory).as_posix() for p in files if not p.exists()]
    if not missing:
        return files
    available = sorted(p.stem for p in (directory / "qrels").glob("*.tsv") if p.is_file())
    if missing == [f"qrels/{split}.tsv"]:
        raise ERAError(
            f"{directory}: no qrels for split {split!r} ({files[2]} missing; available: {available or 'none'})"
        )
    if len(missing) == 3 and not (directory / "qrels").exists():
        raise ERAError(f"{directory}: not a BEIR task directory (no corpus.jsonl); a task directory holds {LAYOUT}")
    note = f"; qrels/ holds the splits {available}" if f"qrels/{split}.tsv" in missing and available else ""
    raise ERAError(f"{directory}: incomplete BEIR task directory: missing {', '.join(missing)} "
                   f"(a task directory holds {LAYOUT}){note}")


def _revision(directory: Path, files: Iterable[Path], meta: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """Content revision of the data files; warns when meta.json's hashes disagree."""
    hashes = {}
    for path in files:
        try:
            hashes[path.relative_to(directory).as_posix()] = sha256_file(path)
        except OSError as err:
            raise ERAError(f"cannot read {path}: {err.strerror or err}") from None
    recorded = meta.get("sha256") if isinstance(meta.get("sha256"), dict) else {}
    changed = sorted(name for name, digest in hashes.items() if name in recorded and recorded[name] != digest)
    if changed:
        warnings.warn(f"{directory}: {changed} differ from the sha256 recorded in meta.json", stacklevel=3)
    combined = hashlib.sha256("".join(f"{n} {h}\n" for n, h in sorted(hashes.items())).encode()).hexdigest()
    return f"sha256:{combined}", hashes


def load_beir_dir(directory: str | os.PathLike, *, split: str = "test") -> RetrievalTask:
    """Load a BEIR-layout task directory (see the module docstring).

    Raises:
        ERAError: a missing file (all three are checked first), any malformed line
            (``file:line``), a blank query, duplicate ids (both lines), an empty corpus, or a bad score.

    Warns:
        QrelsWarning: judgements naming unknown queries / documents were skipped.
    """
    directory = Path(directory)
    corpus_path, queries_path, qrels_path = _layout(directory, split)
    meta = _read_meta(directory)
    revision, hashes = _revision(directory, (corpus_path, queries_path, qrels_path), meta)
    return assemble_task(
        name=meta.get("name") or directory.resolve().name,
        domain=meta.get("domain") or "general",
        instruction=meta.get("instruction") or DEFAULT_INSTRUCTION,
        docs=[doc_record(loc, row) for loc, row in read_jsonl(corpus_path)],
        queries=[query_record(loc, row) for loc, row in read_jsonl(queries_path)],
        qrels=list(read_qrels_tsv(qrels_path)),
        source=str(directory),
        revision=revision,
        meta={"format": "beir-dir", "split": split, "sha256": hashes, "qrels_file": str(qrels_path)},
    )


# -- Hugging Face Hub -----------------------------------------------------------
def _qrels_rows(rows: Iterable[Mapping[str, Any]], where: str) -> list[Qrel]:
    qrels = []
    for number, row in enumerate(rows, 1):
        location = f"{where} row {number}"
        query_id, doc_id, score = (require(row, field, location) for field in QRELS_HEADER)
        qrels.append(
            Qrel(
                location,
                coerce_id(query_id, location, "query-id"),
                coerce_id(doc_id, location, "corpus-id"),
                coerce_score(score, location),
            )
        )
    return qrels


def beir_task_from_rows(
    name: str,
    corpus_rows: Iterable[Mapping[str, Any]],
    query_rows: Iterable[Mapping[str, Any]],
    qrel_rows: Iterable[Mapping[str, Any]],
    *,
    domain: str | None = None,
    instruction: str = DEFAULT_INSTRUCTION,
    source: str = "",
    revision: str | None = None,
) -> RetrievalTask:
    """Convert rows in the ``BeIR/<name>`` Hub schema to a task (pure: no network).

    Rows may be ``datasets.Dataset`` objects or lists of dicts.  Integer ids
    (some BEIR qrels store them as int64) become strings.

    Example:
        >>> t = beir_task_from_rows("toy", [{"_id": "d", "title": "", "text": "x"}],
        ...     [{"_id": "q", "title": "", "text": "y"}], [{"query-id": "q", "corpus-id": "d", "score": 1}])
        >>> t.judged_query_ids()
        ['q']
    """
    where = source or f"BeIR/{name}"
    return assemble_task(
        name=name,
        domain=domain or BEIR_DOMAINS.get(name, "general"),
        instruction=instruction,
        docs=[doc_record(f"{where} corpus row {i}", row) for i, row in enumerate(corpus_rows, 1)],
        queries=[query_record(f"{where} queries row {i}", row) for i, row in enumerate(query_rows, 1)],
        qrels=_qrels_rows(qrel_rows, f"{where}-qrels"),
        source=where,
        revision=revision,
        meta={"format": "beir-hub", "qrels_file": f"{where}-qrels"},
    )


def load_beir_hub(repo: str, *, split: str = "test", revision: str | None = None) -> RetrievalTask:
    """Fetch ``BeIR/<name>`` (+ ``BeIR/<name>-qrels``) from the Hub and convert it.

    ``revision`` applies to both repositories (use a branch or tag name); the
    recorded revision is the corpus repository's commit when the Hub answers.

    Raises:
        ERAError: the Hub cannot be reached (offline) or the dataset is unknown.
    """
    name = repo.split("/", 1)[1]
    corpus = hub_load(repo, "corpus", split="corpus", revision=revision)
    queries = hub_load(repo, "queries", split="queries", revision=revision)
    qrels = hub_load(f"{repo}-qrels", split=split, revision=revision)
    return beir_task_from_rows(name, corpus, queries, qrels, source=repo, revision=hub_revision(repo, revision))
