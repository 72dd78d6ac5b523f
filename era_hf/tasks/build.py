"""Validated construction of a :class:`RetrievalTask` from plain records.

Every loader (BEIR directory, BEIR hub, MAIR hub, builtin) turns its input into
three lists and hands them to :func:`assemble_task`:

* documents ``(location, {"_id", "title", "text"})``,
* queries ``(location, {"_id", "text", "instruction"})``,
* judgements :class:`Qrel` ``(location, query_id, doc_id, score)``.

``location`` is what an error message should point at, e.g. ``corpus.jsonl:12``
or ``MAIR-Bench/MAIR-Docs[APPS] row 12``.  The helpers here check types,
uniqueness of ids and scores, and drop (with one warning) judgements that name
an unknown query or document.

Example:
    >>> task = assemble_task(
    ...     name="toy", domain="demo", instruction="", source="doctest", revision=None,
    ...     docs=[("row 1", {"_id": "d1", "title": "", "text": "hello"})],
    ...     queries=[("row 1", {"_id": "q1", "text": "hi", "instruction": ""})],
    ...     qrels=[Qrel("row 1", "q1", "d1", 2)])
    >>> task.qrels
    {'q1': {'d1': 2}}
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets

from era_hf.errors import ERAError
from era_hf.tasks.task import CORPUS_FEATURES, QUERY_FEATURES, RetrievalTask

__all__ = ["Qrel", "QrelsWarning", "assemble_task", "coerce_id", "coerce_score", "coerce_text", "require"]

Record = tuple[str, Mapping[str, Any]]
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")


class QrelsWarning(UserWarning):
    """Some relevance judgements were dropped because they name unknown ids."""


@dataclass(frozen=True)
class Qrel:
    """One relevance judgement and where it was read."""

    location: str
    query_id: str
    doc_id: str
    score: int


def require(row: Mapping[str, Any], field: str, location: str) -> Any:
    """``row[field]``, or an ERAError naming the location and the fields present."""
    if field not in row:
        raise ERAError(f"{location}: missing field {field!r} (has {sorted(row)})")
    return row[field]


def coerce_id(value: Any, location: str, field: str) -> str:
    """An id as a non-empty string; ints become decimal strings (hub data often stores ids as ints).

    Example:
        >>> coerce_id(7, "row 1", "_id")
        '7'
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ERAError(f"{location}: field {field!r} must be a string id, got {type(value).__name__} {value!r}")
    text = str(value)
    if not text.strip():
        raise ERAError(f"{location}: field {field!r} is empty")
    return text


def coerce_text(record: Mapping[str, Any], field: str, location: str, *, required: bool) -> str:
    """``record[field]`` as a string; a missing optional field or ``None`` becomes ""."""
    if field not in record and not required:
        return ""
    value = require(record, field, location)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ERAError(f"{location}: field {field!r} must be a string, got {type(value).__name__}")
    return value


def coerce_score(value: Any, location: str) -> int:
    """A relevance score as an int >= 0; accepts ints, integral floats and digit strings.

    Example:
        >>> coerce_score("2", "qrels.tsv:2"), coerce_score(1.0, "row 3")
        (2, 1)
    """
    score: int | None = None
    if isinstance(value, bool):
        score = None
    elif isinstance(value, int):
        score = value
    elif isinstance(value, float) and value.is_integer():
        score = int(value)
    elif isinstance(value, str) and _INTEGER.fullmatch(value):
        score = int(value.strip())
    if score is None:
        raise ERAError(f"{location}: relevance score must be an integer, got {value!r}")
    if score < 0:
        raise ERAError(f"{location}: relevance score must be >= 0, got {score}")
    return score


def _index_unique(records: Sequence[Record], what: str) -> dict[str, str]:
    """Map id -> location; ERAError naming both locations on a duplicate id."""
    seen: dict[str, str] = {}
    for location, record in records:
        record_id = record["_id"]
        if record_id in seen:
            raise ERAError(f"duplicate {what} id {record_id!r} at {seen[record_id]} and {location}")
        seen[record_id] = location
    return seen


def _filter_qrels(
    qrels: Iterable[Qrel], query_ids: Mapping[str, str], doc_ids: Mapping[str, str], name: str
) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Keep judgements with known ids; count (and warn once about) the others."""
    kept: dict[str, dict[str, int]] = {}
    where: dict[tuple[str, str], str] = {}
    skipped = {"unknown_query": 0, "unknown_document": 0}
    examples: list[str] = []
    for q in qrels:
        reason = (
            "unknown_query" if q.query_id not in query_ids else "unknown_document" if q.doc_id not in doc_ids else ""
        )
        if reason:
            skipped[reason] += 1
            if len(examples) < 3:
                examples.append(f"{q.location} ({q.query_id!r}, {q.doc_id!r})")
            continue
        previous = kept.setdefault(q.query_id, {}).setdefault(q.doc_id, q.score)
        if previous != q.score:
            pair, first = (q.query_id, q.doc_id), where[(q.query_id, q.doc_id)]
            raise ERAError(f"conflicting scores for {pair!r}: {previous} at {first}, {q.score} at {q.location}")
        where.setdefault((q.query_id, q.doc_id), q.location)
    total = sum(skipped.values())
    if total:
        warnings.warn(
            f"task {name!r}: skipped {total} relevance judgement(s) naming unknown ids "
            f"({skipped['unknown_query']} unknown query, {skipped['unknown_document']} unknown document), "
            f"e.g. {'; '.join(examples)}",
            QrelsWarning,
            stacklevel=2,
        )
    return kept, {k: v for k, v in skipped.items() if v}


def _dataset(records: Sequence[Record], features: datasets.Features) -> datasets.Dataset:
    columns = {name: [record[name] for _, record in records] for name in features}
    return datasets.Dataset.from_dict(columns, features=features)


def assemble_task(
    *,
    name: str,
    domain: str,
    instruction: str,
    docs: Sequence[Record],
    queries: Sequence[Record],
    qrels: Iterable[Qrel],
    source: str,
    revision: str | None,
    meta: dict[str, Any] | None = None,
) -> RetrievalTask:
    """Check ids and judgements, then build the task's datasets.

    Raises:
        ERAError: empty corpus, duplicate document or query id (naming both
            locations), or one query-document pair judged twice with different scores.

    Warns:
        QrelsWarning: once, when judgements naming unknown ids were skipped; the
            counts are kept in ``task.skipped_qrels``.
    """
    if not docs:
        raise ERAError(f"task {name!r}: the corpus is empty ({source})")
    doc_ids = _index_unique(docs, "document")
    query_ids = _index_unique(queries, "query")
    kept, skipped = _filter_qrels(qrels, query_ids, doc_ids, name)
    return RetrievalTask(
        name=name,
        domain=domain,
        instruction=instruction,
        corpus=_dataset(docs, CORPUS_FEATURES),
        queries=_dataset(queries, QUERY_FEATURES),
        qrels=kept,
        source=source,
        revision=revision,
        skipped_qrels=skipped,
        meta=dict(meta or {}),
    )
