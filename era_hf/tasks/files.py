"""Strict line-by-line readers for BEIR files: JSONL records and the qrels TSV.

Both readers decode each line as UTF-8 themselves so that every problem --
undecodable bytes, broken JSON, a missing field, a bad score, the wrong number
of columns -- raises :class:`ERAError` naming ``file:line``.  Blank lines are
skipped; a UTF-8 byte-order mark on the first line is ignored.

Example:
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "q.jsonl"
    >>> _ = p.write_text('{"_id": "1", "text": "hi"}\\n\\n{"_id": 2, "text": "yo"}\\n')
    >>> [(loc.rsplit(":", 1)[1], rec["_id"]) for loc, rec in read_jsonl(p)]
    [('1', '1'), ('3', 2)]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from era_hf.errors import ERAError
from era_hf.tasks.build import Qrel, coerce_id, coerce_score

__all__ = ["QRELS_HEADER", "read_jsonl", "read_lines", "read_qrels_tsv"]

QRELS_HEADER = ("query-id", "corpus-id", "score")


def read_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for non-blank lines, decoding each as UTF-8.

    Raises:
        ERAError: the file is missing, or a line is not valid UTF-8 (``file:line``).
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as err:
        raise ERAError(f"cannot read {path}: {err.strerror or err}") from None
    with handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ERAError(
                    f"{path}:{number}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
                ) from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            if line.strip():
                yield number, line.rstrip("\r\n")


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``("file:line", object)`` for each JSON object line of ``path``.

    Raises:
        ERAError: invalid UTF-8, invalid JSON, or a line that is not a JSON object.
    """
    for number, line in read_lines(path):
        location = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ERAError(f"{location}: invalid JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(record, dict):
            raise ERAError(f"{location}: expected a JSON object, got {type(record).__name__}")
        yield location, record


def _is_header(fields: list[str]) -> bool:
    return tuple(f.strip().lower() for f in fields) == QRELS_HEADER


def read_qrels_tsv(path: str | os.PathLike) -> Iterator[Qrel]:
    """Yield the judgements of a BEIR qrels file (``query-id<TAB>corpus-id<TAB>score``).

    The header line is skipped when it is the first non-blank line.

    Raises:
        ERAError: wrong number of columns, empty id, or a score that is not an
            integer >= 0 -- each naming ``file:line``.
    """
    for index, (number, line) in enumerate(read_lines(path)):
        fields = line.split("\t")
        location = f"{path}:{number}"
        if len(fields) != 3:
            raise ERAError(
                f"{location}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(fields)}"
            )
        if index == 0 and _is_header(fields):
            continue
        query_id, doc_id, score = (f.strip() for f in fields)
        yield Qrel(
            location,
            coerce_id(query_id, location, "query-id"),
            coerce_id(doc_id, location, "corpus-id"),
            coerce_score(score, location),
        )

