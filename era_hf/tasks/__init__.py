"""Retrieval tasks: the `RetrievalTask` container, loaders and the paper's query split.

Public API (everything is re-exported here)::

    load_task(spec, *, split="test", revision=None) -> RetrievalTask
    load_suite(specs, *, split="test") -> list[RetrievalTask]
    RetrievalTask.split(label_ratio=0.2, seed=42) -> TaskSplit

Modules: :mod:`.task` (container), :mod:`.splits` (split protocol),
:mod:`.build` (validation shared by loaders), :mod:`.files` (JSONL / TSV
readers), :mod:`.beir` (BEIR directory and ``BeIR/*`` Hub), :mod:`.mair`
(``MAIR-Bench`` Hub), :mod:`.hub` (Hub access and its errors),
:mod:`.stdlib_code` (``builtin:stdlib-code``), :mod:`.loading` (dispatch),
:mod:`.unlabelled` (query logs without judgments, added as unjudged queries).

Example:
    >>> from era_hf.tasks import load_task
    >>> task = load_task("../shared/data/adi")  # doctest: +SKIP
    >>> s = task.split(label_ratio=0.2, seed=42)  # doctest: +SKIP
    >>> len(s.train), len(s.val), len(s.test)  # doctest: +SKIP
    (7, 4, 17)
"""

from era_hf.tasks.beir import DEFAULT_INSTRUCTION, beir_task_from_rows, load_beir_dir, load_beir_hub
from era_hf.tasks.build import Qrel, QrelsWarning, assemble_task
from era_hf.tasks.loading import ACCEPTED_SPECS, load_suite, load_task
from era_hf.tasks.mair import MAIR_TASKS, load_mair, mair_task_from_rows, mair_task_from_splits, mair_task_names
from era_hf.tasks.splits import TaskSplit, make_split
from era_hf.tasks.stdlib_code import STDLIB_CODE_INSTRUCTION, STDLIB_CODE_SPEC, build_stdlib_code_task
from era_hf.tasks.task import RetrievalTask
from era_hf.tasks.unlabelled import add_unlabelled_queries, attach_query_logs, read_query_log

__all__ = [
    "ACCEPTED_SPECS",
    "DEFAULT_INSTRUCTION",
    "MAIR_TASKS",
    "STDLIB_CODE_INSTRUCTION",
    "STDLIB_CODE_SPEC",
    "Qrel",
    "QrelsWarning",
    "RetrievalTask",
    "TaskSplit",
    "add_unlabelled_queries",
    "assemble_task",
    "attach_query_logs",
    "beir_task_from_rows",
    "build_stdlib_code_task",
    "load_beir_dir",
    "load_beir_hub",
    "load_mair",
    "load_suite",
    "load_task",
    "mair_task_from_rows",
    "mair_task_from_splits",
    "mair_task_names",
    "make_split",
    "read_query_log",
]
