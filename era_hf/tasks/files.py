"""Strict line-by-line readers for BEIR files: JSONL records and the qrels TSV.

Both readers decode each line as UTF-8 themselves so that every problem --
undecodable bytes, broken JSON, a JSON ``\\u`` escape that leaves an unpaired
surrogate (invalid Unicode), a missing field, a bad score, the wrong number of
columns -- raises :class:`ERAError` naming ``file:line``.  Blank lines are
skipped; a UTF-8 byte-order mark on the first line is ignored; CRLF line
endings are accepted.

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
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from era_hf.errors import ERAError
from era_hf.tasks.build import Qrel, coerce_id, coerce_score

__all__ = ["QRELS_HEADER", "check_unicode", "read_jsonl", "read_lines", "read_qrels_tsv"]

QRELS_HEADER = ("query-id", "corpus-id", "score")

#: A JSON escape of a surrogate code point (U+D800..U+DFFF): only lines holding one need the full check.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: A score column that is a number (valid or not): a first line whose score column is anything else is a header.
_NUMBER = re.compile(r"\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")


def _unpaired_surrogate(value: Any, field: str) -> tuple[str, str, int] | None:
    """``(where, surrogate, index)`` of the first unpaired surrogate in a decoded JSON value, else None."""
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        return (field, found.group(), found.start()) if found else None
    if isinstance(value, dict):
        for key, item in value.items():
            hit = _unpaired_surrogate(key, f"a key of {field!r}" if field else "a key") or _unpaired_surrogate(
                item, f"{field}.{key}" if field else key
            )
            if hit:
                return hit
    elif isinstance(value, list):
        for i, item in enumerate(value):
            hit = _unpaired_surrogate(item, f"{field}[{i}]")
            if hit:
                return hit
    return None


def check_unicode(value: Any, location: str) -> None:
    """ERAError naming ``location`` and the field when a string in ``value`` holds an unpaired surrogate.

    ``json.loads`` turns an escape such as ``"\\ud800"`` without its partner into a lone surrogate code
    point, which is not valid Unicode: it cannot be written as UTF-8 (nor stored by pyarrow).

    Example:
        >>> check_unicode({"text": "ok \U0001F600"}, "q.jsonl:1")
        >>> try:
        ...     check_unicode(json.loads('{"text": "bad \\\\ud800"}'), "q.jsonl:2")
        ... except ERAError as err:
        ...     print(str(err).split(": invalid")[0])
        q.jsonl:2: field 'text' holds an unpaired surrogate \\ud800 at character 5
    """
    hit = _unpaired_surrogate(value, "")
    if hit:
        where, char, index = hit
        where = where if where.startswith("a key") else f"field {where!r}"
        raise ERAError(
            f"{location}: {where} holds an unpaired surrogate \\u{ord(char):04x} at character {index + 1}: "
            "invalid Unicode (a JSON \\ud800-\\udfff escape must be half of a surrogate pair)"
        )


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
        ERAError: invalid UTF-8, invalid JSON, a line that is not a JSON object, or a string
            holding an unpaired surrogate (a lone ``\\ud800``-``\\udfff`` escape).
    """
    for number, line in read_lines(path):
        location = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ERAError(f"{location}: invalid JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(record, dict):
            raise ERAError(f"{location}: expected a JSON object, got {type(record).__name__}")
        if _SURROGATE_ESCAPE.search(line):  # decoded UTF-8 holds no surrogate; only an escape can make one
            check_unicode(record, location)
        yield location, record


def _is_header(fields: list[str]) -> bool:
    """A first line is the header when its score column is not a number (``query-id corpus-id score``,
    ``qid docid rel``, ...): BEIR's own loader skips the first line whatever it holds, and a judgement's
    score must be a number, so such a line cannot be one."""
    names = [f.strip() for f in fields]
    return all(names) and not _NUMBER.fullmatch(names[2])


def _columns_hint(line: str, first: bool) -> str:
    words = line.split()
    if len(words) != 3:
        return ""
    if first and not _NUMBER.fullmatch(words[2]):
        return f"; it looks like a header: BEIR's is {chr(9).join(QRELS_HEADER)!r}, tab-separated"
    return "; the columns must be separated by tabs, not spaces"


def read_qrels_tsv(path: str | os.PathLike) -> Iterator[Qrel]:
    """Yield the judgements of a BEIR qrels file (``query-id<TAB>corpus-id<TAB>score``).

    The first non-blank line is a header, and skipped, when its score column is not a number
    (``query-id<TAB>corpus-id<TAB>score`` is BEIR's, but any names are accepted, as BEIR's loader
    does); a file without a header starts with a judgement.

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
                + _columns_hint(line, index == 0)
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

