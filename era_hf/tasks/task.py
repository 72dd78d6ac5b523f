"""`RetrievalTask`: one retrieval test collection held as `datasets.Dataset` objects.

A task has a corpus (columns ``_id``, ``title``, ``text``), queries (columns
``_id``, ``text``, ``instruction``; an empty instruction means "use the task's
instruction") and graded relevance judgements ``qrels[qid][doc_id] = score``.
Only queries with at least one score > 0 are *judged*; only judged queries
enter the train / validation / test split.

Example:
    >>> import datasets
    >>> task = RetrievalTask(
    ...     name="toy", domain="demo", instruction="Find the matching fruit.",
    ...     corpus=datasets.Dataset.from_dict({"_id": ["d1", "d2"], "title": ["Apple", ""],
    ...                                        "text": ["red fruit", "yellow fruit"]}),
    ...     queries=datasets.Dataset.from_dict({"_id": ["q1", "q2"], "text": ["red?", "blue?"],
    ...                                         "instruction": ["", "Find a colour."]}),
    ...     qrels={"q1": {"d1": 1}, "q2": {"d2": 0}}, source="doctest", revision=None)
    >>> task.document_texts()
    ['Apple red fruit', 'yellow fruit']
    >>> task.judged_query_ids()
    ['q1']
    >>> task.query_instructions(["q1", "q2"])
    ['Find the matching fruit.', 'Find a colour.']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets

from era_hf.errors import ERAError
from era_hf.tasks.splits import TaskSplit, make_split

__all__ = ["CORPUS_FEATURES", "QUERY_FEATURES", "RetrievalTask", "column"]

CORPUS_FEATURES = datasets.Features(
    {"_id": datasets.Value("string"), "title": datasets.Value("string"), "text": datasets.Value("string")}
)
QUERY_FEATURES = datasets.Features(
    {"_id": datasets.Value("string"), "text": datasets.Value("string"), "instruction": datasets.Value("string")}
)


def column(ds: datasets.Dataset, name: str) -> list:
    """A column as a plain Python list (fast, whatever format ``ds`` is set to)."""
    return list(ds.with_format(None)[name][:])


@dataclass(eq=False)
class RetrievalTask:
    """A retrieval task: corpus, queries, graded qrels and where they came from.

    Attributes:
        name: unique task name (used in results and suites).
        domain: domain label used for per-domain aggregation.
        instruction: task-level instruction for queries whose own is "".
        corpus: ``datasets.Dataset`` with string columns ``_id``, ``title``, ``text``.
        queries: ``datasets.Dataset`` with string columns ``_id``, ``text``, ``instruction``.
        qrels: ``{query_id: {doc_id: score}}``, integer scores >= 0, known ids only.
        source: where the task was loaded from (directory, hub repo, builtin name).
        revision: content or hub revision that pins the data (None if unknown).
        skipped_qrels: counts of judgement lines dropped while loading
            (``unknown_query``, ``unknown_document``); empty when none were.
        meta: free-form provenance (file hashes, hub configs, filter settings).
    """

    name: str
    domain: str
    instruction: str
    corpus: datasets.Dataset = field(repr=False)
    queries: datasets.Dataset = field(repr=False)
    qrels: dict[str, dict[str, int]] = field(repr=False)
    source: str = ""
    revision: str | None = None
    skipped_qrels: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    _query_rows: tuple[datasets.Dataset, dict[str, int]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for what, ds, features in (("corpus", self.corpus, CORPUS_FEATURES), ("queries", self.queries, QUERY_FEATURES)):
            missing = [c for c in features if c not in ds.column_names]
            if missing:
                raise ERAError(f"task {self.name!r}: {what} lacks column(s) {missing}; has {ds.column_names}")

    # -- documents -------------------------------------------------------
    def document_ids(self) -> list[str]:
        """Corpus ids in corpus order."""
        return column(self.corpus, "_id")

    def document_texts(self) -> list[str]:
        """Texts to embed, in corpus order: ``title + " " + text`` if a title, else ``text``."""
        return [
            f"{title} {text}" if title else text
            for title, text in zip(column(self.corpus, "title"), column(self.corpus, "text"), strict=True)
        ]

    # -- queries ---------------------------------------------------------
    def query_ids(self) -> list[str]:
        """All query ids in queries order (judged or not)."""
        return column(self.queries, "_id")

    def _rows(self, ids: Sequence[str]) -> list[int]:
        if self._query_rows is None or self._query_rows[0] is not self.queries:
            self._query_rows = (self.queries, {qid: i for i, qid in enumerate(self.query_ids())})
        rows = self._query_rows[1]
        try:
            return [rows[qid] for qid in ids]
        except KeyError as err:
            raise ERAError(f"task {self.name!r}: unknown query id {err.args[0]!r}") from None

    def query_texts(self, ids: Sequence[str]) -> list[str]:
        """Texts of the queries ``ids`` (in that order); ERAError on an unknown id."""
        texts = column(self.queries, "text")
        return [texts[i] for i in self._rows(ids)]

    def query_instructions(self, ids: Sequence[str]) -> list[str]:
        """Each query's own instruction, or the task's when the query's is empty."""
        own = column(self.queries, "instruction")
        return [own[i] or self.instruction for i in self._rows(ids)]

    def judged_query_ids(self) -> list[str]:
        """Queries with at least one qrel score > 0, in queries order."""
        return [qid for qid in self.query_ids() if any(s > 0 for s in self.qrels.get(qid, {}).values())]

    def split(self, label_ratio: float = 0.2, seed: int = 42) -> TaskSplit:
        """The paper's split of the judged queries (see :mod:`era_hf.tasks.splits`).

        Example:
            >>> s = task.split(0.2)  # doctest: +SKIP
            >>> set(s.train).isdisjoint(s.test)  # doctest: +SKIP
            True
        """
        judged = self.judged_query_ids()
        if not judged:
            raise ERAError(self._no_judged_query_message())
        return make_split(judged, label_ratio, seed, task=self.name)

    def _no_judged_query_message(self) -> str:
        """Why no query is judged: the qrels file, how many judgements scored 0, how many named unknown ids."""
        qrels = self.meta.get("qrels_file") or self.source or "its relevance judgements"
        zero = sum(len(docs) for docs in self.qrels.values())
        unknown = sum(self.skipped_qrels.values())
        found = [f"{zero} judgement(s) of known ids, all with score 0" if zero else "",
                 f"{unknown} naming unknown query or document ids (skipped)" if unknown else ""]
        return (f"task {self.name!r}: no query has a relevant judged document (a score > 0 for a query and "
                f"a document of the task) in {qrels}; found {'; '.join(f for f in found if f) or 'no judgement'}")

    def __repr__(self) -> str:
        return (
            f"RetrievalTask(name={self.name!r}, domain={self.domain!r}, docs={self.corpus.num_rows}, "
            f"queries={self.queries.num_rows}, judged={len(self.judged_query_ids())}, source={self.source!r})"
        )
