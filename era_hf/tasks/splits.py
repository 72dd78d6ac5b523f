"""The paper's fixed train / validation / test split of a task's judged queries.

Protocol (ERA paper, stage 2), for the ``n`` judged queries of one task:

1. take them in ``queries`` order and shuffle with ``random.Random(seed).shuffle``;
2. the last ``n // 2`` are the **test** queries;
3. the ``max(1, round(0.1 * n))`` right before them are the **validation** queries;
4. the remaining queries form the training pool, and **train** is its first
   ``max(1, int(label_ratio * n))`` queries (capped at the pool size).

Because the shuffle depends only on ``seed`` and the query order, the test and
validation sets are the same for every ``label_ratio``, and the training sets
are nested prefixes: ``split(0.05).train`` is a prefix of ``split(0.1).train``.

Example:
    >>> s = make_split([str(i) for i in range(35)], label_ratio=0.2, seed=42)
    >>> len(s.train), len(s.val), len(s.test)
    (7, 4, 17)
    >>> make_split([str(i) for i in range(35)], 0.05).train == s.train[:1]
    True
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from era_hf.errors import ERAError

__all__ = ["TaskSplit", "make_split"]


@dataclass(frozen=True)
class TaskSplit:
    """Query ids of one task's train / validation / test sets.

    ``to_dict()`` gives a JSON-ready record to store next to results so that a
    run can be checked (or re-scored) on exactly the same queries.

    Example:
        >>> s = TaskSplit(train=["a"], val=["b"], test=["c", "d"], seed=42, label_ratio=0.2)
        >>> s.to_dict()["n_test"]
        2
    """

    train: list[str]
    val: list[str]
    test: list[str]
    seed: int
    label_ratio: float
    task: str = ""
    n_judged: int = field(default=0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict: the id lists, seed, ratio and the three sizes."""
        record = asdict(self)
        record.update(n_train=len(self.train), n_val=len(self.val), n_test=len(self.test))
        return record


def _check_ratio(label_ratio: float, task: str) -> float:
    if isinstance(label_ratio, bool) or not isinstance(label_ratio, (int, float)):
        raise ERAError(f"task {task!r}: label_ratio must be a number in (0, 1), got {label_ratio!r}")
    if not 0.0 < float(label_ratio) < 1.0:
        raise ERAError(f"task {task!r}: label_ratio must be in (0, 1), got {label_ratio}")
    return float(label_ratio)


def make_split(query_ids: Sequence[str], label_ratio: float = 0.2, seed: int = 42, *, task: str = "") -> TaskSplit:
    """Split judged ``query_ids`` (in queries order) with the paper's protocol.

    Raises:
        ERAError: ``label_ratio`` outside (0, 1), a non-integer ``seed``, or a
            task too small to leave any training query once test (50%) and
            validation (>= 1 query) are set aside.

    Example:
        >>> s = make_split(["q1", "q2", "q3", "q4"], 0.2, seed=0)
        >>> sorted(s.train + s.val + s.test)
        ['q1', 'q2', 'q3', 'q4']
    """
    ratio = _check_ratio(label_ratio, task)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ERAError(f"task {task!r}: seed must be an integer, got {seed!r}")
    shuffled = list(query_ids)
    random.Random(seed).shuffle(shuffled)
    n = len(shuffled)
    if n == 0:
        raise ERAError(f"task {task!r} has no judged query (none with a relevance score > 0): nothing to split")
    n_test = n // 2
    n_val = max(1, round(0.1 * n))
    pool_end = n - n_test - n_val
    if pool_end <= 0:
        raise ERAError(
            f"task {task!r} has only {n} judged queries: after {n_test} test and {n_val} validation "
            f"queries none is left for training (label_ratio={ratio})"
        )
    n_train = min(pool_end, max(1, int(ratio * n)))
    return TaskSplit(
        train=shuffled[:n_train],
        val=shuffled[pool_end : n - n_test],
        test=shuffled[n - n_test :],
        seed=seed,
        label_ratio=ratio,
        task=task,
        n_judged=n,
    )
