"""MAIR (Sun et al., EMNLP 2024): 126 instructed retrieval tasks in 6 domains, on the Hub.

Schema used (from the MAIR README, github.com/sunnweiwei/MAIR, and its
evaluation code ``mair.py`` / ``config.py`` at commit 38c95e3 / 3b45273):

* ``MAIR-Bench/MAIR-Queries``, one config per task.  Most configs have one split
  ``queries``; a few (e.g. ``IFEval``, ``MISeD``) have several splits
  ``<group>_queries``, each searched against its own corpus.  Rows::

      {"qid": str, "query": str, "instruction": str,
       "labels": [{"id": str, "score": int}, ...]}   # relevant docs, score usually 1

* ``MAIR-Bench/MAIR-Docs``, same configs; split ``docs`` (or ``<group>_docs``
  matching ``<group>_queries``).  Rows: ``{"id": str, "doc": str}``.

Conversion: query ``_id`` = ``qid``, ``text`` = ``query``, ``instruction`` = the
row's instruction (instructions are per query in MAIR); the task instruction
is the most frequent one.  Documents have no title.  Ids are converted to
strings (MAIR's own evaluation does ``str(x["id"])``).

A task with several groups is loaded as one task whose query and document ids
are prefixed with ``"<group>/"`` and whose corpus is the union of the group
corpora; ``task.meta["groups"]`` lists the groups.  (MAIR itself searches each
group's corpus separately.)  ``mair:<Task>/<group>`` loads a single group as
task ``<Task>.<group>`` with unprefixed ids.

Example:
    >>> parse_mair_spec("mair:IFEval/change_case__english_capital_1999")
    ('IFEval', 'change_case__english_capital_1999')
    >>> MAIR_TASKS["APPS"], len(MAIR_TASKS)
    ('Code', 126)
"""

from __future__ import annotations

import collections
import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from era_hf.errors import ERAError
from era_hf.tasks.build import Qrel, Record, assemble_task, coerce_id, coerce_score, coerce_text, require
from era_hf.tasks.hub import hub_load, hub_revision
from era_hf.tasks.task import RetrievalTask

__all__ = [
    "MAIR_DOCS_REPO",
    "MAIR_QUERIES_REPO",
    "MAIR_TASKS",
    "load_mair",
    "mair_task_from_rows",
    "mair_task_from_splits",
    "mair_task_names",
    "parse_mair_spec",
]

MAIR_QUERIES_REPO = "MAIR-Bench/MAIR-Queries"
MAIR_DOCS_REPO = "MAIR-Bench/MAIR-Docs"

_DOMAIN_TASKS = {
    "Web": (
        "AY2", "ELI5", "Fever", "TREx", "WnCw", "WnWi", "WoW", "zsRE", "ArguAna", "CQADupStack", "Quora", "TopiOCQA",
        "Touche", "ACORDAR", "CPCD", "ChroniclingAmericaQA", "NTCIR", "PointRec", "ProCIS-Dialog", "ProCIS-Turn",
        "QuanTemp", "WebTableSearch", "MISeD", "SParC", "SParC-SQL", "Spider", "Spider-SQL", "CAsT_2019", "CAsT_2020",
        "CAsT_2021", "CAsT_2022", "Core_2017", "Microblog_2011", "Microblog_2012", "Microblog_2013", "Microblog_2014",
        "DD_2015", "DD_2016", "DD_2017", "FairRanking_2021", "FairRanking_2022", "NeuCLIR-Tech_2023", "NeuCLIR_2022",
        "NeuCLIR_2023", "ProductSearch_2023", "ToT_2023", "ToT_2024", "ExcluIR", "Core17", "News21", "Robust04",
        "InstructIR", "NevIR", "IFEval",
    ),
    "Code": (
        "APPS", "CodeEditSearch", "CodeSearchNet", "Conala", "HumanEval-X", "LeetCode", "MBPP", "RepoBench", "TLDR",
        "SWE-Bench-Lite", "FoodAPI", "HuggingfaceAPI", "PytorchAPI", "SpotifyAPI", "TMDB", "TensorAPI", "ToolBench",
        "WeatherAPI",
    ),
    "Academic": (
        "Competition-Math", "ProofWiki_Proof", "ProofWiki_Reference", "Stacks_Proof", "Stacks_Reference", "Stein_Proof",
        "Stein_Reference", "Trench_Proof", "Trench_Reference", "TAD", "TAS2", "StackMathQA", "SciDocs", "SciFact",
        "LitSearch", "FairRanking_2020",
    ),
    "Legal": (
        "AILA2019-Case", "AILA2019-Statutes", "BSARD", "BillSum", "CUAD", "GerDaLIR", "LeCaRDv2", "LegalQuAD",
        "REGIR-EU2UK", "REGIR-UK2EU", "TREC-Legal_2011",
    ),
    "Medical": (
        "NFCorpus", "Trec-Covid", "Monant", "CARE", "PrecisionMedicine_2017", "PrecisionMedicine_2018",
        "PrecisionMedicine_2019", "PrecisionMedicine-Article_2019", "PrecisionMedicine-Article_2020", "CliniDS_2014",
        "CliniDS_2015", "CliniDS_2016", "ClinicalTrials_2021", "ClinicalTrials_2022", "ClinicalTrials_2023",
        "Genomics-AdHoc_2004", "Genomics-AdHoc_2005", "Genomics-AdHoc_2006", "Genomics-AdHoc_2007",
    ),
    "Finance": ("Apple", "ConvFinQA", "FinQA", "FinanceBench", "HC3Finance", "TAT-DQA", "Trade-the-event", "FiQA"),
}  # fmt: skip

#: MAIR task name -> domain (126 tasks; MAIR's ``config.py`` TASK_CONFIG).
MAIR_TASKS: dict[str, str] = {task: domain for domain, tasks in _DOMAIN_TASKS.items() for task in tasks}


def mair_task_names(domain: str | None = None) -> list[str]:
    """MAIR task names, all or of one domain (``Web``, ``Code``, ``Academic``, ``Legal``, ``Medical``, ``Finance``).

    Example:
        >>> len(mair_task_names("Finance"))
        8
    """
    if domain is None:
        return list(MAIR_TASKS)
    if domain not in _DOMAIN_TASKS:
        raise ERAError(f"unknown MAIR domain {domain!r}; choose from {sorted(_DOMAIN_TASKS)}")
    return list(_DOMAIN_TASKS[domain])


def _check_task(task: str) -> str:
    if task not in MAIR_TASKS:
        close = difflib.get_close_matches(task, MAIR_TASKS, n=3)
        hint = f"; did you mean {close}?" if close else f"; see era_hf.tasks.mair.MAIR_TASKS ({len(MAIR_TASKS)} tasks)"
        raise ERAError(f"unknown MAIR task {task!r}{hint}")
    return task


def parse_mair_spec(spec: str) -> tuple[str, str | None]:
    """``(task, group)`` from ``mair:<Task>[/<group>]`` or ``MAIR-Bench/[MAIR-Queries/]<Task>[/<group>]``.

    ``group`` may be given with or without its ``_queries`` suffix.
    """
    rest = spec.removeprefix("mair:") if spec.startswith("mair:") else spec.removeprefix("MAIR-Bench/")
    for repo in ("MAIR-Queries/", "MAIR-Docs/"):
        rest = rest.removeprefix(repo)
    task, _, group = rest.partition("/")
    if not task:
        raise ERAError(f"{spec!r}: no MAIR task name (expected mair:<Task>, e.g. mair:APPS)")
    return _check_task(task), (group.removesuffix("_queries") or None)


def _docs_split(query_split: str) -> str:
    """MAIR pairs query split ``queries`` with ``docs`` and ``<g>_queries`` with ``<g>_docs``."""
    return "docs" if query_split == "queries" else query_split.removesuffix("_queries") + "_docs"


def _group(query_split: str) -> str:
    return "" if query_split == "queries" else query_split.removesuffix("_queries")


def _labels(value: Any, location: str) -> list[Mapping[str, Any]]:
    """``labels`` as a list of ``{id, score}``; also accepts the columnar ``{id: [...], score: [...]}``
    form that ``datasets`` produces for a legacy ``Sequence`` feature."""
    if value is None:
        return []
    if isinstance(value, Mapping) and isinstance(value.get("id"), list) and isinstance(value.get("score"), list):
        return [{"id": i, "score": s} for i, s in zip(value["id"], value["score"], strict=True)]
    if not isinstance(value, list) or not all(isinstance(label, Mapping) for label in value):
        raise ERAError(f"{location}: 'labels' must be a list of {{id, score}} objects, got {value!r}"[:300])
    return value


def _query_records(rows: Iterable[Mapping[str, Any]], where: str, prefix: str) -> tuple[list[Record], list[Qrel]]:
    queries: list[Record] = []
    qrels: list[Qrel] = []
    for number, row in enumerate(rows, 1):
        location = f"{where} row {number}"
        qid = prefix + coerce_id(require(row, "qid", location), location, "qid")
        text = coerce_text(row, "query", location, required=True)
        instruction = coerce_text(row, "instruction", location, required=False)
        queries.append((location, {"_id": qid, "text": text, "instruction": instruction}))
        for label in _labels(require(row, "labels", location), location):
            doc_id = coerce_id(require(label, "id", location), location, "labels.id")
            qrels.append(
                Qrel(location, qid, prefix + doc_id, coerce_score(require(label, "score", location), location))
            )
    return queries, qrels


def _doc_records(rows: Iterable[Mapping[str, Any]], where: str, prefix: str) -> list[Record]:
    docs: list[Record] = []
    for number, row in enumerate(rows, 1):
        location = f"{where} row {number}"
        doc_id = prefix + coerce_id(require(row, "id", location), location, "id")
        docs.append((location, {"_id": doc_id, "title": "", "text": coerce_text(row, "doc", location, required=True)}))
    return docs


def _task_instruction(queries: list[Record]) -> str:
    """The most frequent per-query instruction (first seen wins a tie)."""
    counts = collections.Counter(record["instruction"] for _, record in queries if record["instruction"])
    return counts.most_common(1)[0][0] if counts else ""


def mair_task_from_splits(
    task: str,
    query_splits: Mapping[str, Iterable[Mapping[str, Any]]],
    doc_splits: Mapping[str, Iterable[Mapping[str, Any]]],
    *,
    group: str | None = None,
    domain: str | None = None,
    revision: str | None = None,
) -> RetrievalTask:
    """Convert MAIR rows (``{split: rows}`` as in a loaded ``DatasetDict``) to a task; no network.

    With ``group`` only the ``<group>_queries`` / ``<group>_docs`` pair is used.

    Example:
        >>> q = {"queries": [{"qid": "1", "query": "sort a list", "instruction": "Find code.",
        ...                   "labels": [{"id": "a", "score": 1}]}]}
        >>> d = {"docs": [{"id": "a", "doc": "sorted(x)"}, {"id": "b", "doc": "len(x)"}]}
        >>> t = mair_task_from_splits("APPS", q, d)
        >>> t.name, t.domain, t.instruction, t.qrels
        ('APPS', 'Code', 'Find code.', {'1': {'a': 1}})
    """
    splits = sorted(query_splits)
    if group is not None:
        wanted = f"{group}_queries"
        if wanted not in query_splits:
            raise ERAError(f"MAIR task {task!r} has no group {group!r}; groups: {[_group(s) for s in splits]}")
        splits = [wanted]
    if not splits:
        raise ERAError(f"MAIR task {task!r}: no query splits")
    missing = [_docs_split(s) for s in splits if _docs_split(s) not in doc_splits]
    if missing:
        raise ERAError(f"MAIR task {task!r}: document split(s) {missing} missing; have {sorted(doc_splits)}")
    merged = len(splits) > 1
    docs: list[Record] = []
    queries: list[Record] = []
    qrels: list[Qrel] = []
    for split in splits:
        prefix = f"{_group(split)}/" if merged else ""
        docs += _doc_records(doc_splits[_docs_split(split)], f"{MAIR_DOCS_REPO}[{task}/{_docs_split(split)}]", prefix)
        split_queries, split_qrels = _query_records(query_splits[split], f"{MAIR_QUERIES_REPO}[{task}/{split}]", prefix)
        queries += split_queries
        qrels += split_qrels
    return assemble_task(
        name=f"{task}.{group}" if group else task,
        domain=domain or MAIR_TASKS.get(task, "unknown"),
        instruction=_task_instruction(queries),
        docs=docs,
        queries=queries,
        qrels=qrels,
        source=f"{MAIR_QUERIES_REPO}:{task}" + (f"/{group}" if group else ""),
        revision=revision,
        meta={"format": "mair", "groups": [_group(s) for s in splits] if merged else []},
    )


def mair_task_from_rows(
    task: str, query_rows: Iterable[Mapping[str, Any]], doc_rows: Iterable[Mapping[str, Any]], **kwargs: Any
) -> RetrievalTask:
    """Convert one MAIR query split and its document split (the common single-split case)."""
    return mair_task_from_splits(task, {"queries": query_rows}, {"docs": doc_rows}, **kwargs)


def _revisions(revision: str | None) -> tuple[str | None, str | None]:
    """``"<rev>"`` for both repositories, or ``"<queries_rev>+<docs_rev>"``."""
    if revision and "+" in revision:
        queries_rev, docs_rev = revision.split("+", 1)
        return queries_rev or None, docs_rev or None
    return revision, revision


def load_mair(spec: str, *, revision: str | None = None) -> RetrievalTask:
    """Fetch a MAIR task from the Hub and convert it (``spec`` as in :func:`parse_mair_spec`).

    ``revision``: a branch / tag for both repositories, or ``"<queries_sha>+<docs_sha>"``.
    The recorded revision is ``"<queries_sha>+<docs_sha>"`` when the Hub answers.

    Raises:
        ERAError: unknown task, the Hub cannot be reached (offline), or a malformed row.
    """
    task, group = parse_mair_spec(spec)
    queries_rev, docs_rev = _revisions(revision)
    query_splits = _fetch(MAIR_QUERIES_REPO, task, group, "queries", queries_rev)
    doc_splits = _fetch(MAIR_DOCS_REPO, task, group, "docs", docs_rev)
    resolved = [hub_revision(MAIR_QUERIES_REPO, queries_rev), hub_revision(MAIR_DOCS_REPO, docs_rev)]
    recorded = "+".join(r or "main" for r in resolved) if any(resolved) else None
    return mair_task_from_splits(task, query_splits, doc_splits, group=group, revision=recorded)


def _fetch(repo: str, task: str, group: str | None, kind: str, revision: str | None) -> Mapping[str, Any]:
    """All splits of ``task`` in ``repo`` (a ``DatasetDict``), or only ``<group>_<kind>``."""
    if group is None:
        return hub_load(repo, task, revision=revision)
    split = f"{group}_{kind}"
    return {split: hub_load(repo, task, split=split, revision=revision)}
