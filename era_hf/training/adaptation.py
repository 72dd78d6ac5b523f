"""Stage 2: supervised adaptation with few labels (InfoNCE over mined negatives).

Per training pair: the head's output for the query against ``[positive, negative_1..k]``
(cosine / temperature, target 0); with ``negatives="corpus"`` (ours) against every unjudged
document of the query's task instead. Options (all off in the reference): in-batch negatives
(the other positives of the *global* batch from the same task, never a document judged for
the query), all positives, per-epoch resampling of negatives, early stopping on validation
nDCG@10, an L2 penalty toward the stage-1 weights, and (ours) stage 1's listwise distillation of the fused
scores as a second loss term.

The validation loss is the reference InfoNCE over the fixed validation pairs (no in-batch
negatives), averaged as the reference does (mean of per-batch means).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .arguments import AdaptationArguments
from .data import AdaptationData
from .losses import info_nce_loss


def reference_lr_lambda(total_steps: int, warmup_ratio: float, schedule: str = "linear"):
    """The reference schedule: ``step / warmup`` during warm-up (0 at step 0), then linear decay to 0."""
    warmup = int(total_steps * warmup_ratio)

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        if schedule == "constant":
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return lr_lambda


def _anchors(data: AdaptationData, rows: torch.Tensor) -> torch.Tensor | None:
    return None if data.anchors is None else data.anchors[rows]


def make_loss_fn(data: AdaptationData, args: AdaptationArguments):
    """``(model, shard_rows, batch_rows) -> per-item InfoNCE`` on the training pairs."""

    def loss_fn(model: Any, shard: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        tr = data.train
        q_rows = tr.query[shard]
        pred = model(data.q[q_rows], _anchors(data, q_rows))
        pos = data.docs[tr.positive[shard]]
        negs = data.docs[tr.negatives[shard]]
        extra = mask = None
        if data.corpus_negatives is not None:  # negatives="corpus": every unjudged doc of the query's task
            extra, mask = data.docs, data.corpus_negatives[q_rows]
        elif args.in_batch_negatives:
            batch_pos = tr.positive[batch]
            extra = data.docs[batch_pos]
            n_docs = data.docs.shape[0]
            keys = q_rows[:, None] * n_docs + batch_pos[None, :]
            judged = torch.isin(keys, data.judged_keys)
            mask = (tr.task[shard][:, None] == tr.task[batch][None, :]) \
                & (tr.positive[shard][:, None] != batch_pos[None, :]) & ~judged
        return info_nce_loss(pred, pos, negs, args.temperature, extra, mask)

    return loss_fn


def make_penalty_fn(reference_state: dict[str, torch.Tensor], weight: float):
    """``weight * Σ ||θ - θ_stage1||²`` over the head's trainable parameters."""

    def penalty(module: torch.nn.Module) -> torch.Tensor:
        total = None
        for name, p in module.named_parameters():
            if p.requires_grad:
                term = (p - reference_state[name].to(p)).pow(2).sum()
                total = term if total is None else total + term
        return weight * total

    return penalty


def make_distillation_term(groups: Any, args: Any, weight: float, seed: int):
    """``adaptation.distill_weight`` (ours): ``weight`` × stage 1's listwise distillation loss on one batch of
    unlabelled queries per step, pulling the head toward the fused ranking on the tasks' documents and non-test
    queries while the labels move it. Returns ``(term, start_epoch)``: ``term(module)`` is the loop's penalty;
    ``start_epoch(epoch)`` re-seeds its batches from ``(seed, epoch)``, so a resumed run draws the same batches
    and every process the same one (the term is not sharded: identical on all processes, it survives DDP's
    gradient averaging unchanged)."""
    from .alignment import distillation_batch_loss

    generator = torch.Generator()

    def start_epoch(epoch: int) -> None:
        generator.manual_seed((seed * 1_000_003 + 30_011 * (epoch + 1)) % (2**63))

    def term(module: torch.nn.Module) -> torch.Tensor:
        return weight * distillation_batch_loss(module, groups, args, generator)

    return term, start_epoch


def make_evaluate(data: AdaptationData, args: AdaptationArguments, module: Any, accelerator: Any, embedder: Any):
    """Validation loss (and nDCG@10 when it drives early stopping), identical on every process."""
    from .loop import batch_mean_of_means, gather_rows

    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)

    def val_loss() -> float | None:
        va = data.val
        n = len(va)
        if n == 0:
            return None
        rows = torch.arange(n, device=data.q.device)[rank::world]
        q_rows = va.query[rows]
        pred = module(data.q[q_rows], _anchors(data, q_rows))
        extra, mask = (None, None) if data.corpus_negatives is None else (data.docs, data.corpus_negatives[q_rows])
        values = info_nce_loss(pred, data.docs[va.positive[rows]], data.docs[va.negatives[rows]], args.temperature,
                               extra, mask)
        return batch_mean_of_means(gather_rows(accelerator, rows, values, n), args.batch_size)

    entries = [(t, qid, int(r)) for t, (qids, q_rows) in sorted(data.val_queries.items())
               for qid, r in zip(qids, q_rows)]

    def val_ndcg() -> float | None:
        from ..evaluation import search_exact
        from ..metrics import retrieval_metrics

        if not entries:
            return None
        mine = list(range(len(entries)))[rank::world]
        values = torch.zeros(len(mine), dtype=torch.float64)
        by_task: dict[int, list[int]] = {}
        for j, e in enumerate(mine):
            by_task.setdefault(entries[e][0], []).append(j)
        for t, js in by_task.items():
            info = data.infos[t]
            q_rows = torch.as_tensor([entries[mine[j]][2] for j in js], device=data.q.device)
            pred = module(data.q[q_rows], _anchors(data, q_rows)).detach().cpu().numpy()
            qids = [entries[mine[j]][1] for j in js]
            ranked = search_exact(pred, info.corpus(embedder), info.doc_ids, k=10)
            ndcg = retrieval_metrics(qids, ranked, info.task.qrels, ks=(10,))["ndcg@10"]
            values[js] = torch.as_tensor(ndcg, dtype=torch.float64)
        rows = torch.as_tensor(mine, dtype=torch.long)
        per_query = gather_rows(accelerator, rows.to(data.q.device), values.to(data.q.device), len(entries)).cpu()
        tasks = np.asarray([e[0] for e in entries])
        return float(np.mean([per_query[tasks == t].mean().item() for t in np.unique(tasks)]))

    def evaluate() -> dict[str, float]:
        out = {"val_loss": val_loss()}
        if args.early_stopping_metric == "ndcg@10":
            out["val_ndcg@10"] = val_ndcg()
        return {k: v for k, v in out.items() if v is not None}

    return evaluate
