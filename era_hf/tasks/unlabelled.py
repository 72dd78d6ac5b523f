"""Query logs without judgments: past queries of an index, added to its task as unjudged queries.

A query without qrels never enters the train / validation / test split, so a log changes no label and no
test query. Stage 1 reads every non-test query text of the tasks it aligns on (the distillation of recipe
``recommended``, and the clarity guard), so a log gives it more real queries of the domain; on the five
``../shared/data`` collections that raised nDCG@10 where no label was used (``benchmarks/query_log.py``).

Files (``.jsonl``: one JSON object per line with a ``text`` string and an optional ``instruction``, as in
BEIR's ``queries.jsonl``; ``.txt``: one query per non-blank line). A text equal to one of the task's queries
is left out: a repeat of a test query would let stage 1 see it, and a non-test query is read already.

Example:
    >>> import datasets, pathlib, tempfile
    >>> task = RetrievalTask(name="toy", domain="demo", instruction="",
    ...     corpus=datasets.Dataset.from_dict({"_id": ["d1"], "title": [""], "text": ["red fruit"]}),
    ...     queries=datasets.Dataset.from_dict({"_id": ["q1"], "text": ["red?"], "instruction": [""]}),
    ...     qrels={"q1": {"d1": 1}})
    >>> log = pathlib.Path(tempfile.mkdtemp()) / "log.txt"
    >>> _ = log.write_text("apples\\nred?\\napples\\npears\\n")
    >>> task2, record = add_unlabelled_queries(task, log)
    >>> task2.query_texts(task2.query_ids()), record["added"], record["left_out"]
    (['red?', 'apples', 'pears'], 2, {'repeats_a_task_query': 1, 'repeats_the_log': 1})
    >>> task2.judged_query_ids()
    ['q1']
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from era_hf.atomic import sha256_file
from era_hf.errors import ERAError
from era_hf.tasks.build import coerce_text
from era_hf.tasks.files import read_jsonl, read_lines
from era_hf.tasks.task import QUERY_FEATURES, RetrievalTask, column

__all__ = ["LOG_SUFFIXES", "add_unlabelled_queries", "attach_query_logs", "read_query_log"]

LOG_SUFFIXES = (".jsonl", ".txt")


def read_query_log(path: str | os.PathLike) -> list[tuple[str, str, str]]:
    """``(file:line, text, instruction)`` for each query of a ``.jsonl`` or ``.txt`` log, in file order.

    Raises:
        ERAError: another suffix, a missing file, invalid UTF-8 or JSON, a line without a non-blank ``text``
            string (each naming ``file:line``), or a log with no query.
    """
    path = Path(path)
    if path.suffix not in LOG_SUFFIXES:
        raise ERAError(f"query log {path}: expected a .jsonl file (one {{\"text\": ...}} object per line) or a "
                       f".txt file (one query per line), got {path.suffix or 'no suffix'!r}")
    if not path.is_file():
        raise ERAError(f"query log {path} does not exist")
    if path.suffix == ".txt":
        entries = [(f"{path}:{n}", line.strip(), "") for n, line in read_lines(path)]
    else:
        entries = []
        for location, record in read_jsonl(path):
            text = coerce_text(record, "text", location, required=True)
            if not text.strip():
                raise ERAError(f"{location}: field 'text' is blank")
            entries.append((location, text, coerce_text(record, "instruction", location, required=False)))
    if not entries:
        raise ERAError(f"query log {path} holds no query")
    return entries


def add_unlabelled_queries(task: RetrievalTask, path: str | os.PathLike) -> tuple[RetrievalTask, dict[str, Any]]:
    """A copy of ``task`` with the log's queries appended (no qrels), and a record of what was added.

    The new queries get ids ``log:<file name>:<line>``; the copy's ``revision`` hashes the task's revision
    with the log's SHA-256, so checkpoints and results of the task without the log are not mixed up with it.
    """
    path = Path(path)
    task_texts, logged = set(column(task.queries, "text")), set()
    ids = set(task.query_ids())
    rows: dict[str, list[str]] = {"_id": [], "text": [], "instruction": []}
    repeats_task = repeats_log = 0
    for location, text, instruction in read_query_log(path):
        if text in task_texts or text in logged:
            repeats_task += text in task_texts
            repeats_log += text not in task_texts
            continue
        logged.add(text)
        qid = f"log:{path.name}:{location.rsplit(':', 1)[1]}"
        if qid in ids:
            raise ERAError(f"{location}: task {task.name!r} already has a query with id {qid!r}")
        for key, value in (("_id", qid), ("text", text), ("instruction", instruction)):
            rows[key].append(value)
    digest = sha256_file(path)
    record = {"task": task.name, "file": str(path), "sha256": digest, "added": len(rows["_id"]),
              "left_out": {"repeats_a_task_query": repeats_task, "repeats_the_log": repeats_log}}
    base = task.queries.select_columns(list(QUERY_FEATURES))
    if base.features != QUERY_FEATURES:
        base = base.cast(QUERY_FEATURES)
    queries = datasets.concatenate_datasets([base, datasets.Dataset.from_dict(rows, features=QUERY_FEATURES)])
    revision = "sha256:" + hashlib.sha256(f"{task.revision}\n{digest}".encode()).hexdigest()
    meta = {**task.meta, "unlabelled_queries": [*task.meta.get("unlabelled_queries", []), record]}
    return dataclasses.replace(task, queries=queries, revision=revision, meta=meta), record


def attach_query_logs(tasks: Sequence[RetrievalTask],
                      specs: Sequence[str]) -> tuple[list[RetrievalTask], list[dict[str, Any]]]:
    """Add each ``TASK=FILE`` (or ``FILE``, when there is one task) log to its task.

    Raises:
        ERAError: ``FILE`` alone with several tasks, an unknown task name, or a bad log (see
            :func:`read_query_log`).
    """
    out = list(tasks)
    by_name = {t.name: i for i, t in enumerate(out)}
    records = []
    for spec in specs:
        name, sep, file = str(spec).partition("=")
        if not sep or (name not in by_name and os.path.exists(spec)):
            name, file = "", str(spec)
        if not name:
            if len(out) != 1:
                raise ERAError(f"unlabelled query log {spec!r}: stage 1 reads {len(out)} tasks "
                               f"({', '.join(by_name)}); name the one it belongs to as TASK=FILE")
            name = out[0].name
        if name not in by_name:
            raise ERAError(f"unlabelled query log {spec!r}: no task {name!r} among the tasks stage 1 reads "
                           f"({', '.join(by_name)})")
        i = by_name[name]
        out[i], record = add_unlabelled_queries(out[i], file)
        records.append(record)
    return out, records
