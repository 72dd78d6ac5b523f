"""Tensors the two stages train on, built from tasks and cached embeddings.

Everything is held as whole tensors and batches index their rows (no per-item Dataset).
Only the rows a stage needs are gathered: the stage-1 document sample, the queries of the
train/val splits, and the documents that occur as a positive or negative (the corpus
embeddings are memory-mapped from the cache and read in blocks when the teacher ranks them).

Multi-process runs (``accelerate launch``): :class:`Embedder` shards each cache miss over the
processes, gathers the pieces, and the main process writes the cache entry; all processes then
read the same entry.
"""

from __future__ import annotations

import logging
import random
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import ERAError
from ..lexical import BM25, standardized
from . import negatives as neg
from .arguments import TrainingArguments

logger = logging.getLogger("era_hf.training")

#: Rows per gather round when a cache miss is encoded by several processes.
GATHER_ROWS = 50_000


# ---------------------------------------------------------------------- embeddings
class Embedder:
    """:class:`~era_hf.task_embeddings.EncoderPair` lookups, sharded over processes on cache misses."""

    def __init__(self, pair: Any, accelerator: Any = None) -> None:
        self.pair = pair
        self.accelerator = accelerator
        self.encoded_texts = 0  # texts this process encoded (cache misses)

    @property
    def _distributed(self) -> bool:
        return self.accelerator is not None and self.accelerator.num_processes > 1

    def query_side(self, texts: Sequence[str], max_length: int | None = None) -> np.ndarray:
        if not self._distributed:
            return self.pair.embed_query_side(list(texts), max_length=max_length)
        return self._sharded("query", list(texts), max_length)

    def document_side(self, texts: Sequence[str]) -> np.ndarray:
        if not self._distributed:
            return self.pair.embed_document_side(list(texts))
        return self._sharded("document", list(texts), None)

    def corpus(self, task: Any) -> np.ndarray:
        """The document encoder's embeddings of the task's corpus (memory-mapped when cached)."""
        return self.document_side(task.document_texts())

    def queries(self, task: Any, qids: Sequence[str], side: str = "query") -> np.ndarray:
        texts = self.pair.format_queries(task, list(qids), side)
        return self.query_side(texts) if side == "query" else self.document_side(texts)

    def _sharded(self, side: str, texts: list[str], max_length: int | None) -> np.ndarray:
        from accelerate.utils import broadcast_object_list, gather_object

        acc = self.accelerator
        pair = self.pair
        cache = pair.cache
        fingerprint = pair.query_fingerprint(max_length) if side == "query" else pair.document_fingerprint()
        hit = [False]
        if cache is not None and acc.is_main_process:
            hit[0] = cache.lookup(fingerprint, texts) is not None
        broadcast_object_list(hit)
        if not hit[0]:
            encoder = pair.query_encoder() if side == "query" else pair.document_encoder()
            if max_length is not None and max_length != encoder.max_length:
                from ..encoders import TextEncoder

                encoder = TextEncoder(encoder.model, encoder.tokenizer, encoder.model_id, encoder.revision,
                                      encoder.pooling, encoder.normalize, max_length)
            bounds = np.linspace(0, len(texts), acc.num_processes + 1).astype(int)
            mine = texts[bounds[acc.process_index]:bounds[acc.process_index + 1]]
            show = None if acc.is_main_process and pair.show_progress_bar is not False else False
            local = encoder.encode(mine, batch_size=pair.batch_size, show_progress_bar=show) if mine else \
                np.zeros((0, encoder.dim), dtype=np.float32)
            self.encoded_texts += len(mine)
            pieces: list[list[np.ndarray]] = [[] for _ in range(acc.num_processes)]
            longest = int(np.max(np.diff(bounds))) if len(texts) else 0
            for start in range(0, max(longest, 1), GATHER_ROWS):
                for rank, part in enumerate(gather_object([local[start:start + GATHER_ROWS]])):
                    pieces[rank].append(part)
            full = np.concatenate([p for rank in pieces for p in rank], axis=0).astype(np.float32)
            if full.shape[0] != len(texts):
                raise ERAError(f"sharded encoding returned {full.shape[0]} rows for {len(texts)} texts")
            if cache is None:
                acc.wait_for_everyone()
                full.setflags(write=False)
                return full
            if acc.is_main_process:
                cache.store(fingerprint, texts, full)
            acc.wait_for_everyone()
        array = cache.lookup(fingerprint, texts)
        if array is None:  # the cache is not writable: every process encodes the whole list itself
            return self.pair.embed_query_side(texts, max_length=max_length) if side == "query" else \
                self.pair.embed_document_side(texts)
        return array


# ---------------------------------------------------------------------- tasks
@dataclass
class TaskInfo:
    """One task as the trainer sees it: its split, corpus ids and (lazily) corpus embeddings."""

    index: int
    task: Any
    split: Any
    doc_ids: list[str]
    doc_row: dict[str, int]
    offset: int  # global row offset of this corpus among all tasks' corpora
    warnings: list[str] = field(default_factory=list)
    _corpus: np.ndarray | None = None

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    def corpus(self, embedder: Embedder) -> np.ndarray:
        if self._corpus is None:
            self._corpus = embedder.corpus(self.task)
            if self._corpus.shape[0] != self.n_docs:
                raise ERAError(f"task {self.name!r}: {self._corpus.shape[0]} corpus embeddings for "
                               f"{self.n_docs} documents")
        return self._corpus


def prepare_tasks(tasks: Sequence[Any], args: TrainingArguments, labels: bool = True) -> list[TaskInfo]:
    """Split every task (``task.split(label_ratio, split_seed)``), with the reference's 1-query fallback.

    ``labels=False``: tasks that only lend their documents to stage 1 (``alignment_tasks``): no split.
    """
    names = [t.name for t in tasks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ERAError(f"task names must be unique; repeated: {dupes}")
    infos: list[TaskInfo] = []
    offset = 0
    for i, task in enumerate(tasks):
        split = task.split(args.label_ratio, args.split_seed) if labels else None
        notes = []
        n_judged = split.n_judged if labels else 0  # all judged queries: the split's train is already the labelled few
        if labels and args.mode != "alignment_only" and int(args.label_ratio * n_judged) < 1:
            note = (f"task {task.name!r}: label_ratio={args.label_ratio} of {n_judged} judged queries gives no "
                    f"training query; falling back to 1 query (as the reference does)")
            warnings.warn(note, stacklevel=3)
            notes.append(note)
        doc_ids = task.document_ids()
        doc_row = {d: r for r, d in enumerate(doc_ids)}
        infos.append(TaskInfo(i, task, split, doc_ids, doc_row, offset, notes))
        offset += len(doc_ids)
    return infos


def non_test_query_ids(info: TaskInfo, args: TrainingArguments) -> list[str]:
    """Every query of ``info``'s task outside its test split, for unlabelled use (their texts only).

    A task that only lends its documents (``alignment_tasks``) has no split of its own; when it has judged
    queries it is split like a training task, so its test queries stay unseen (too few to split: none is read).
    """
    split = info.split
    if split is None and info.task.judged_query_ids():
        try:
            split = info.task.split(args.label_ratio, args.split_seed)
        except ERAError:
            return []
    test = set(split.test) if split is not None else set()
    return [q for q in info.task.query_ids() if q not in test]


# ---------------------------------------------------------------------- stage 1
@dataclass
class AlignmentData:
    """Stage-1 pairs: head input ``x`` (query encoder) and target ``y`` (document encoder) of the same texts."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_eval: torch.Tensor
    y_eval: torch.Tensor
    counts: dict[str, dict[str, int]]  # per task: documents / queries used

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])


def sample_documents(n_docs: int, k: int, seed: int) -> list[int]:
    """The reference's per-task sample: ``random.Random(seed).sample(range(n), k)``, or all docs shuffled."""
    rng = random.Random(seed)
    if k >= n_docs:
        idx = list(range(n_docs))
        rng.shuffle(idx)
        return idx
    return rng.sample(range(n_docs), k)


def heldout_split(n: int, ratio: float, seed: int) -> tuple[list[int], list[int]]:
    """The reference's pooled split: shuffle with ``Random(seed)``, first ``max(1, int(n ratio))`` are held out;
    both parts keep their original order."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:max(1, int(n * ratio))])
    return [i for i in range(n) if i not in held], [i for i in range(n) if i in held]


def query_side_documents(info: TaskInfo, embedder: Embedder, rows: np.ndarray) -> np.ndarray:
    """The query encoder's embeddings of the task's documents at sorted corpus ``rows``.

    They use the document length limit: the setting (and, for a whole corpus in corpus order, the very cache
    entry) of the query-model corpus baseline. A sample is embedded in corpus order, so its cache key does not
    depend on the sampling order.
    """
    pair = embedder.pair
    texts = info.task.document_texts()
    fp = pair.query_fingerprint(pair.document_max_length)
    if len(rows) == info.n_docs or (pair.cache is not None and pair.cache.contains(fp, texts)):
        return np.asarray(embedder.query_side(texts, max_length=pair.document_max_length)[rows])
    return np.asarray(embedder.query_side([texts[i] for i in rows], max_length=pair.document_max_length))


def build_alignment_data(infos: Sequence[TaskInfo], embedder: Embedder, args: TrainingArguments,
                         device: torch.device | str = "cpu") -> AlignmentData:
    """Identical texts embedded by both encoders: sampled documents (+ train/val queries when asked).

    Rows are pooled in the reference's order (each task's sample, then the queries) and written straight
    into one preallocated array already split into [train | held-out] (memory: one copy of the pairs).
    """
    a = args.alignment
    samples = [sample_documents(info.n_docs, a.docs_per_task, a.sample_seed) for info in infos]
    query_ids = [list(info.split.train) + list(info.split.val) if a.include_queries else [] for info in infos]
    n = sum(len(s) for s in samples) + sum(len(q) for q in query_ids)
    if n < 2:
        raise ERAError(f"stage 1 needs at least 2 texts, the tasks give {n}")
    train, held = heldout_split(n, a.eval_ratio, a.sample_seed)
    dest = np.empty(n, dtype=np.int64)
    dest[np.asarray(train + held, dtype=np.int64)] = np.arange(n)
    x = y = None
    pos = 0
    counts: dict[str, dict[str, int]] = {}

    def put(x_part: np.ndarray, y_part: np.ndarray) -> None:
        nonlocal x, y, pos
        if x is None:
            x = np.empty((n, x_part.shape[1]), dtype=np.float32)
            y = np.empty((n, y_part.shape[1]), dtype=np.float32)
        rows = dest[pos:pos + len(x_part)]
        x[rows] = x_part
        y[rows] = y_part
        pos += len(x_part)

    for info, idx in zip(infos, samples):
        counts[info.name] = {"documents": len(idx), "queries": 0}
        if not idx:
            continue
        rows = np.sort(np.asarray(idx, dtype=np.int64))
        order = np.searchsorted(rows, np.asarray(idx, dtype=np.int64))  # back to the reference's sample order
        put(query_side_documents(info, embedder, rows)[order], np.asarray(info.corpus(embedder)[rows])[order])
    for info, qids in zip(infos, query_ids):
        if qids:
            put(np.asarray(embedder.queries(info.task, qids, "query")),
                np.asarray(embedder.queries(info.task, qids, "document")))
            counts[info.name]["queries"] = len(qids)
    k = len(train)
    t = lambda arr: torch.from_numpy(arr).to(device)  # noqa: E731  (views of x / y on CPU: no copy)
    return AlignmentData(t(x[:k]), t(y[:k]), t(x[k:]), t(y[k:]), counts)


@dataclass
class DistillationGroup:
    """One task's listwise-distillation tensors: queries and documents, each embedded by both encoders."""

    name: str
    queries: torch.Tensor  # (n, q_dim) the query encoder's embeddings of the queries
    anchors: torch.Tensor  # (n, d_dim) the document encoder's embeddings of the same texts
    own_doc: torch.Tensor  # (n,) the row in ``docs`` of a query that is a document; -1 for a real query
    docs_strong: torch.Tensor  # (m, q_dim) the query encoder's embeddings of the documents ranked
    docs: torch.Tensor  # (m, d_dim) the document encoder's embeddings of the same documents (the index)
    lexical: torch.Tensor | None = None  # (n, m) z-scored BM25 of the query texts (distill_lexical_weight > 0)

    @property
    def n_queries(self) -> int:
        return int(self.queries.shape[0])


def lexical_teacher(info: TaskInfo, rows: np.ndarray, as_query: np.ndarray, qids: Sequence[str]) -> torch.Tensor:
    """BM25 of the distillation queries (documents ``rows[as_query]``, then the query texts ``qids``) against the
    documents ``rows``, z-scored per query with a document's own entry zeroed (it is left out of its list)."""
    texts = info.task.document_texts()
    docs = [texts[i] for i in rows]
    scores = BM25(docs).scores([docs[i] for i in as_query] + info.task.query_texts(qids))
    own = torch.zeros_like(scores, dtype=torch.bool)
    own[torch.arange(len(as_query)), torch.from_numpy(as_query)] = True
    return standardized(scores, exclude=own)


#: Above this many documents in a task, distilling over all of them (``distill_docs_per_task=0``) gets a warning:
#: the strong encoder embeds each once and every step scores its queries against all of them.
LARGE_DISTILLATION_CORPUS = 50_000


def build_distillation_data(infos: Sequence[TaskInfo], embedder: Embedder, args: TrainingArguments,
                            device: torch.device | str = "cpu") -> list[DistillationGroup]:
    """Per task: ``distill_docs_per_task`` documents (all when 0) to rank, the first ``distill_pseudo_queries`` of
    them (in ``sample_seed`` order) as queries, plus the task's non-test query texts (no labels read; only the
    unjudged ones with ``distill_judged_queries=False``)."""
    a = args.alignment
    t = lambda arr: torch.from_numpy(np.array(arr)).to(device)  # noqa: E731  (a copy: cache entries are read-only)
    groups = []
    for info in infos:
        k = a.distill_docs_per_task or info.n_docs
        if not a.distill_docs_per_task and k > LARGE_DISTILLATION_CORPUS:
            warnings.warn(f"task {info.name!r}: the distillation ranks all {k:,} of its documents, each embedded once "
                          f"by the query encoder; --alignment.distill-docs-per-task N ranks a sample of N instead",
                          stacklevel=2)
        sample = sample_documents(info.n_docs, k, a.sample_seed)
        rows = np.sort(np.asarray(sample, dtype=np.int64))
        docs = np.asarray(info.corpus(embedder)[rows], dtype=np.float32)
        docs_strong = query_side_documents(info, embedder, rows).astype(np.float32, copy=False)
        as_query = np.searchsorted(rows, np.asarray(sample[:a.distill_pseudo_queries], dtype=np.int64))
        qids = non_test_query_ids(info, args)
        if not a.distill_judged_queries:
            judged = set(info.task.judged_query_ids())
            qids = [q for q in qids if q not in judged]
        queries, anchors = [docs_strong[as_query]], [docs[as_query]]
        if qids:
            queries.append(np.asarray(embedder.queries(info.task, qids, "query"), dtype=np.float32))
            anchors.append(np.asarray(embedder.queries(info.task, qids, "document"), dtype=np.float32))
        own = np.concatenate([as_query, np.full(len(qids), -1, dtype=np.int64)])
        if len(own) == 0:
            continue
        lexical = lexical_teacher(info, rows, as_query, qids).to(device) if a.distill_lexical_weight else None
        groups.append(DistillationGroup(info.name, t(np.concatenate(queries)), t(np.concatenate(anchors)), t(own),
                                        t(docs_strong), t(docs), lexical))
    if not groups:
        raise ERAError("alignment.distill_steps: the alignment tasks give no document or query to distill on")
    return groups


# ---------------------------------------------------------------------- stage 2
@dataclass
class PairSet:
    """Training (or validation) pairs as index tensors into :class:`AdaptationData`'s ``q`` and ``docs``."""

    query: torch.Tensor  # (n,) rows of q
    positive: torch.Tensor  # (n,) rows of docs
    negatives: torch.Tensor  # (n, k) rows of docs
    task: torch.Tensor  # (n,) task index

    def __len__(self) -> int:
        return int(self.query.shape[0])


@dataclass
class _PairSpec:
    """Host-side description of a pair (for resampling): its query row, task, positive's corpus row, the
    query's judged (excluded) corpus rows and the teacher candidates its negatives are drawn from."""

    q_row: int
    task: int
    pos: int  # corpus row
    excluded: list[int]
    candidates: list[int]


@dataclass
class AdaptationData:
    q: torch.Tensor  # (n_queries, q_dim) query-encoder embeddings of the train+val queries
    anchors: torch.Tensor | None  # (n_queries, d_dim) document-encoder embeddings (anchored heads)
    docs: torch.Tensor  # (n_docs_used, d_dim) the documents that occur in some pair
    doc_keys: np.ndarray  # global key (task offset + corpus row) of each docs row, sorted
    train: PairSet
    val: PairSet
    judged_keys: torch.Tensor  # sorted q_row * n_docs_used + doc row, for every judged (query, used doc)
    # negatives="corpus": (n_queries, n_docs_used) True where the doc is an unjudged doc of the query's task
    corpus_negatives: torch.Tensor | None
    val_queries: dict[int, tuple[list[str], np.ndarray]]  # task index -> (val qids, rows of q)
    stats: dict[str, dict[str, int]]
    train_specs: list[_PairSpec]
    infos: Sequence[TaskInfo]
    device: torch.device | str = "cpu"
    _query_index: list[tuple[int, str, int]] = field(default_factory=list)  # (task, qid, q_row)

    def resample(self, seed: int, epoch: int, args: TrainingArguments) -> None:
        """New negatives for every training pair (same teacher candidates), reproducible from (seed, epoch)."""
        rng = random.Random(seed * 1_000_003 + epoch)
        b = args.adaptation
        negs = []
        for spec in self.train_specs:
            info = self.infos[spec.task]
            drawn = neg.draw_negatives(b.negatives, rng, info.n_docs, spec.excluded, spec.candidates,
                                       b.num_negatives)
            negs.append(drawn)
        keys_needed = [self.infos[s.task].offset + np.asarray([s.pos, *n], dtype=np.int64)
                       for s, n in zip(self.train_specs, negs)]
        val_keys = self.doc_keys[np.concatenate([self.val.positive.cpu().numpy()[:, None],
                                                 self.val.negatives.cpu().numpy()], axis=1).reshape(-1)] \
            if len(self.val) else np.zeros(0, np.int64)
        all_keys = np.unique(np.concatenate([*keys_needed, val_keys]))
        docs = _gather_docs(self.infos, all_keys, self.device)
        remap = lambda keys: torch.as_tensor(np.searchsorted(all_keys, keys), dtype=torch.long)  # noqa: E731
        k = b.num_negatives
        train_keys = np.stack(keys_needed) if keys_needed else np.zeros((0, k + 1), np.int64)
        if len(self.val):
            val_keys = val_keys.reshape(len(self.val), k + 1)
            self.val = PairSet(self.val.query, remap(val_keys[:, 0]).to(self.device),
                               remap(val_keys[:, 1:]).to(self.device), self.val.task)
        self.train = PairSet(self.train.query, remap(train_keys[:, 0]).to(self.device),
                             remap(train_keys[:, 1:]).to(self.device), self.train.task)
        self.judged_keys = _judged_keys(self.infos, self._query_index, all_keys, self.device)
        self.docs, self.doc_keys = docs, all_keys


def _gather_docs(infos: Sequence[TaskInfo], keys: np.ndarray, device: Any) -> torch.Tensor:
    """Rows of the tasks' corpora for sorted global ``keys`` (each corpus read only at those rows)."""
    parts = []
    for info in infos:
        lo, hi = np.searchsorted(keys, [info.offset, info.offset + info.n_docs])
        if hi > lo:
            rows = keys[lo:hi] - info.offset
            parts.append(np.asarray(info._corpus[rows], dtype=np.float32))
    if not parts:
        raise ERAError("no documents are used by any training pair")
    docs = torch.from_numpy(np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]).to(device)
    return docs.div_(docs.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def _judged_keys(infos: Sequence[TaskInfo], query_index: list[tuple[int, str, int]], doc_keys: np.ndarray,
                 device: Any) -> torch.Tensor:
    n = len(doc_keys)
    out = []
    for t, qid, q_row in query_index:
        info = infos[t]
        rows = [info.doc_row[d] for d in info.task.qrels.get(qid, {}) if d in info.doc_row]
        if not rows:
            continue
        keys = info.offset + np.asarray(rows, dtype=np.int64)
        pos = np.searchsorted(doc_keys, keys)
        found = (pos < n) & (doc_keys[np.minimum(pos, n - 1)] == keys)
        out.append(q_row * n + pos[found])
    keys = np.unique(np.concatenate(out)) if out else np.zeros(0, np.int64)
    return torch.as_tensor(keys, dtype=torch.long, device=device)


def build_adaptation_data(infos: Sequence[TaskInfo], embedder: Embedder, args: TrainingArguments,
                          teacher: Callable[[np.ndarray, np.ndarray], np.ndarray], anchored: bool,
                          device: torch.device | str = "cpu") -> AdaptationData:
    """Stage-2 pairs of every task (negatives from the task's own corpus), pooled into tensors.

    ``teacher(q_emb, doc_side_q_emb) -> (n, d_dim)`` scores candidates for hard negatives.
    Queries whose positives are all missing from the corpus are skipped and counted.
    """
    b = args.adaptation
    hard = b.negatives in ("topk_percpos", "naive_topk")
    q_parts, a_parts, stats = [], [], {}
    train_specs: list[_PairSpec] = []
    val_specs: list[_PairSpec] = []
    val_negs: list[list[int]] = []
    train_negs: list[list[int]] = []
    query_index: list[tuple[int, str, int]] = []
    val_queries: dict[int, tuple[list[str], np.ndarray]] = {}
    q_offset = 0
    for info in infos:
        train_qids, val_qids = list(info.split.train), list(info.split.val)
        qids = train_qids + val_qids
        st = {"train_queries": len(train_qids), "val_queries": len(val_qids), "train_pairs": 0, "val_pairs": 0,
              "skipped_no_positive_in_corpus": 0, "skipped_too_few_negatives": 0}
        stats[info.name] = st
        if not qids:
            continue
        q_emb = np.asarray(embedder.queries(info.task, qids, "query"), dtype=np.float32)
        d_emb = np.asarray(embedder.queries(info.task, qids, "document"), dtype=np.float32)
        q_parts.append(q_emb)
        if anchored:
            a_parts.append(d_emb)
        corpus = info.corpus(embedder)
        excluded = [sorted({info.doc_row[d] for d in info.task.qrels.get(qid, {}) if d in info.doc_row})
                    for qid in qids]
        ranked = None
        t_emb = None
        if hard:
            t_emb = np.asarray(teacher(q_emb, d_emb), dtype=np.float32)
            ranked = neg.rank_candidates(t_emb, corpus, excluded, b.teacher_top_k, device)
        for part, part_qids, seed, specs, negs in (("train", train_qids, args.seed, train_specs, train_negs),
                                                   ("val", val_qids, args.seed + 1, val_specs, val_negs)):
            rng = random.Random(seed)
            first = 0 if part == "train" else len(train_qids)
            for j, qid in enumerate(part_qids):
                i = first + j
                rel = info.task.qrels.get(qid, {})
                positives = [d for d, s in rel.items() if s > 0 and d in info.doc_row]
                if not positives:
                    st["skipped_no_positive_in_corpus"] += 1
                    continue
                chosen = positives if b.all_positives else [rng.choice(positives)]
                made = 0
                for pos_id in chosen:
                    pos = info.doc_row[pos_id]
                    cands: list[int] = []
                    if hard and info.n_docs - len(excluded[i]) >= b.num_negatives:
                        idx, scores = ranked[i]
                        pos_score = neg.teacher_score(t_emb[i], corpus[pos])
                        cands = neg.hard_candidates(b.negatives, idx, scores, pos_score, b.num_negatives,
                                                    b.percpos_margin)
                    drawn = neg.draw_negatives(b.negatives, rng, info.n_docs, excluded[i], cands, b.num_negatives)
                    if drawn is None:
                        continue
                    specs.append(_PairSpec(q_offset + i, info.index, pos, excluded[i], cands))
                    negs.append(drawn)
                    made += 1
                if made == 0:
                    st["skipped_too_few_negatives"] += 1
                st[f"{part}_pairs"] += made
        for i, qid in enumerate(qids):
            query_index.append((info.index, qid, q_offset + i))
        vq = [(qid, q_offset + len(train_qids) + j) for j, qid in enumerate(val_qids)
              if any(s > 0 and d in info.doc_row for d, s in info.task.qrels.get(qid, {}).items())]
        if vq:
            val_queries[info.index] = ([q for q, _ in vq], np.asarray([r for _, r in vq], dtype=np.int64))
        q_offset += len(qids)
    if not train_specs:
        raise ERAError("no training pairs: no task has a training query with a judged positive in its corpus "
                       f"(per task: {stats})")
    for name, st in stats.items():
        if st["train_pairs"] == 0:
            msg = f"task {name!r} contributes no training pair ({st})"
            warnings.warn(msg, stacklevel=3)
        if st["skipped_no_positive_in_corpus"]:
            logger.warning("task %r: %d queries skipped (their positives are not in the corpus)", name,
                           st["skipped_no_positive_in_corpus"])

    def keys_of(specs: list[_PairSpec], negs: list[list[int]]) -> np.ndarray:
        k = args.adaptation.num_negatives
        if not specs:
            return np.zeros((0, k + 1), np.int64)
        return np.stack([infos[s.task].offset + np.asarray([s.pos, *n], dtype=np.int64) for s, n in zip(specs, negs)])

    train_keys, val_keys = keys_of(train_specs, train_negs), keys_of(val_specs, val_negs)
    all_keys = np.unique(np.concatenate([train_keys.reshape(-1), val_keys.reshape(-1)]))
    corpus_negatives = None
    if b.negatives == "corpus":  # every document of every task takes part; mask: same task, not judged
        all_keys = np.arange(sum(info.n_docs for info in infos), dtype=np.int64)
        corpus_negatives = torch.zeros(q_offset, len(all_keys), dtype=torch.bool)
        for t, qid, q_row in query_index:
            info = infos[t]
            corpus_negatives[q_row, info.offset:info.offset + info.n_docs] = True
            judged = [info.offset + info.doc_row[d] for d in info.task.qrels.get(qid, {}) if d in info.doc_row]
            corpus_negatives[q_row, judged] = False
        corpus_negatives = corpus_negatives.to(device)
    docs = _gather_docs(infos, all_keys, device)

    def pairset(specs: list[_PairSpec], keys: np.ndarray) -> PairSet:
        as_t = lambda a: torch.as_tensor(a, dtype=torch.long).to(device)  # noqa: E731
        idx = np.searchsorted(all_keys, keys)
        return PairSet(as_t([s.q_row for s in specs]), as_t(idx[:, 0] if len(specs) else np.zeros(0, np.int64)),
                       as_t(idx[:, 1:] if len(specs) else np.zeros((0, keys.shape[1] - 1), np.int64)),
                       as_t([s.task for s in specs]))

    q = torch.as_tensor(np.concatenate(q_parts, axis=0)).to(device)
    anchors = torch.as_tensor(np.concatenate(a_parts, axis=0)).to(device) if anchored else None
    data = AdaptationData(q=q, anchors=anchors, docs=docs, doc_keys=all_keys,
                          train=pairset(train_specs, train_keys), val=pairset(val_specs, val_keys),
                          judged_keys=_judged_keys(infos, query_index, all_keys, device),
                          corpus_negatives=corpus_negatives, val_queries=val_queries,
                          stats=stats, train_specs=train_specs, infos=infos, device=device)
    data._query_index = query_index
    return data

