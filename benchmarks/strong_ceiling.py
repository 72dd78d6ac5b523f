"""How closely can the adapter imitate the query encoder on one collection? (the ceiling behind #9's goal 2)

Goal 2 of the quality issue asks the adapter, on the frozen cheap index, to match the query encoder run on
its own re-encoded corpus. This script measures how far the adapter gets by imitating that encoder in the
most favourable setting there is: the anchored head of recipe ``recommended`` (linear; ``--head`` another
type) is distilled from its score map (the package's own :func:`era_hf.training.alignment.distilled_score_init`)
toward the fused scores ``cheap(q)·cheap(d) + W · strong(q)·strong(d)`` for several teacher weights ``W`` (large
``W``: the query encoder's own ranking), with every document and EVERY judged query of the task as unlabelled
queries, test queries included (transductive: the test queries' rankings are the very thing it learns). Then it
scores the test queries. If even here the head stays well below the query encoder zero-shot, imitating it cannot
close the gap; labels could still (with as few as this task's training queries), which this does not test.

Two probes tell where such a gap comes from, per teacher weight:

- **the head distilled on the test queries alone** (the same distillation, without documents as queries):
  does learning from documents as queries hold the head back on real queries?
- **a free vector per test query**, fitted alone to its teacher ranking in the cheap index's space (Adam,
  ``FREE_STEPS`` steps, lr ``FREE_LR``, from the cheap encoder's query embedding): how closely the frozen
  index can reproduce that ranking at all, with nothing shared between queries. It is not a bound on
  nDCG@10 (it imitates the teacher, it does not read labels), but where it comes close to the teacher and
  the head does not, the index is not what holds the head back. Its teacher is ``2 / (1 + W)`` times the
  head's: the same ranking, on the cosines' scale, so that at large ``W`` the temperature still spreads its
  weight beyond the top document.

Writes ``OUT`` (JSON: command, environment, per weight the teacher's and the head's test nDCG@10); files under
``results/ceiling/`` become a section of BENCHMARKS.md (:func:`render_ceiling_section`).

Example::

    python benchmarks/strong_ceiling.py --task ../shared/data/medline --out results/ceiling/medline.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MINILM, MPNET, Run, provenance, records_section, set_threads, setup_env  # noqa: E402

WEIGHTS = (1.0, 3.0, 10.0, 100.0)
FREE_STEPS, FREE_LR = 1500, 0.01


def free_vectors(start, teacher, docs, temperature: float):
    """Per query, a vector fitted alone (from ``start``) so that its cosine ranking of ``docs`` imitates
    ``teacher``'s (listwise KL at ``temperature``); returns them L2-normalised."""
    import torch
    import torch.nn.functional as F

    from era_hf.training.losses import listwise_distillation_loss

    v = torch.nn.Parameter(start.clone())
    optimizer = torch.optim.Adam([v], lr=FREE_LR)
    for _ in range(FREE_STEPS):
        loss = listwise_distillation_loss(F.normalize(v, dim=-1) @ docs.T, teacher, temperature).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return F.normalize(v.detach(), dim=-1)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, help="a task directory (BEIR layout)")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--query-encoder", default=MPNET)
    parser.add_argument("--document-encoder", default=MINILM)
    parser.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS), help="teacher weights W")
    parser.add_argument("--steps", type=int, default=600, help="distillation steps (recipe: 300 per task)")
    parser.add_argument("--lr", type=float, default=None, help="distillation learning rate (default: the recipe's)")
    parser.add_argument("--head", default="linear", help="the head type distilled (the recipe's: linear)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    setup_env()
    set_threads(args.threads)
    import torch

    from era_hf.metrics import rank_from_scores, retrieval_metrics
    from era_hf.task_embeddings import EncoderPair
    from era_hf.tasks import load_task
    from era_hf.training import get_recipe
    from era_hf.training.alignment import distilled_score_init
    from era_hf.training.arguments import AlignmentArguments
    from era_hf.training.data import DistillationGroup
    from era_hf.heads import HEADS, build_head

    if args.head not in HEADS:  # a clear line before any embedding is loaded
        parser.error(f"--head {args.head!r}: expected one of {', '.join(HEADS)}")
    task = load_task(args.task)
    pair = EncoderPair(args.query_encoder, args.document_encoder)
    split = task.split(0.2, 42)
    doc_ids = task.document_ids()
    t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))  # noqa: E731  (a copy: cache entries are read-only)
    docs, docs_strong = t(pair.corpus(task)), t(pair.corpus(task, side="query"))
    qids = list(split.train) + list(split.val) + list(split.test)
    q_strong, q_cheap = t(pair.queries(task, qids, "query")), t(pair.queries(task, qids, "document"))
    test = slice(len(qids) - len(split.test), len(qids))

    def ndcg(scores: torch.Tensor) -> float:
        ranked = rank_from_scores(scores.numpy(), doc_ids, 100)
        return float(retrieval_metrics(list(split.test), ranked, task.qrels)["ndcg@10"].mean())

    run = Run(Path(args.out).stem, argparse.Namespace(results_dir=str(Path(args.out).parent)))
    cheap_scores, strong_scores = q_cheap[test] @ docs.T, q_strong[test] @ docs_strong.T
    run.results = {"task": task.name, "n_test_queries": len(split.test), "n_documents": len(doc_ids),
                   "doc_zero_shot": ndcg(cheap_scores), "query_zero_shot": ndcg(strong_scores), "weights": {}}
    n, n_test = docs.shape[0], len(split.test)
    group = DistillationGroup(task.name, torch.cat([docs_strong, q_strong]), torch.cat([docs, q_cheap]),
                              torch.cat([torch.arange(n), torch.full((len(qids),), -1)]), docs_strong, docs)
    test_only = DistillationGroup(task.name, q_strong[test], q_cheap[test], torch.full((n_test,), -1), docs_strong,
                                  docs)
    held = torch.randperm(n, generator=torch.Generator().manual_seed(42))[: max(1, n // 10)]
    keep = torch.ones(n, dtype=torch.bool)
    keep[held] = False
    # the score map's ridge fit reads these: the strong encoder's documents from the cheap encoder's, 10% held out
    fit = SimpleNamespace(x_train=docs_strong[keep], y_train=docs[keep], x_eval=docs_strong[held], y_eval=docs[held])
    base = get_recipe("recommended").arguments(tasks=["x"], output_dir="out").alignment
    if args.lr is not None:
        base = dataclasses.replace(base, distill_lr=args.lr)

    def distilled_ndcg(distilled_on: DistillationGroup, al: AlignmentArguments, seed: int) -> tuple[float, dict]:
        torch.manual_seed(seed)  # the init of a head's nonlinear part (the score map overwrites the linear one)
        head = build_head(args.head, docs_strong.shape[1], docs.shape[1])
        record = distilled_score_init(head, fit, [distilled_on], al, seed)["distillation"]
        with torch.no_grad():
            return ndcg(head(q_strong[test], q_cheap[test]) @ docs.T), record

    for w in args.weights:
        al = dataclasses.replace(base, distill_steps=args.steps, distill_teacher_weight=w)
        heads, alone = [], []
        for seed in args.seeds:
            score, record = distilled_ndcg(group, al, seed)
            heads.append(score)
            alone.append(distilled_ndcg(test_only, al, seed)[0])
            print(f"W={w:g} seed {seed}: head {heads[-1]:.4f} (loss {record['loss_first_tenth']:.4f} -> "
                  f"{record['loss_last_tenth']:.4f}), on the test queries alone {alone[-1]:.4f}", flush=True)
        teacher = cheap_scores + w * strong_scores  # distillation_batch_loss's teacher
        # the same ranking on the cosines' scale (W = 1: unchanged), so the temperature weighs more than its top-1
        free = ndcg(free_vectors(q_cheap[test], teacher * 2 / (1 + w), docs, base.distill_temperature) @ docs.T)
        print(f"W={w:g}: a free vector per test query {free:.4f}", flush=True)
        run.results["weights"][f"{w:g}"] = {"teacher": ndcg(teacher), "head_mean": float(np.mean(heads)),
                                            "head_per_seed": heads, "test_only_head_mean": float(np.mean(alone)),
                                            "test_only_head_per_seed": alone, "free_vectors": free}
    run.results["settings"] = {"head": args.head, "steps": args.steps, "seeds": args.seeds,
                               "temperature": base.distill_temperature, "lr": base.distill_lr,
                               "batch_size": base.distill_batch_size,
                               "free_vector_steps": FREE_STEPS, "free_vector_lr": FREE_LR}
    run.write()
    r = run.results
    print(f"{task.name}: doc {r['doc_zero_shot']:.4f}, query encoder {r['query_zero_shot']:.4f}")
    for w, v in r["weights"].items():
        print(f"  W={w}: teacher {v['teacher']:.4f}, distilled head {v['head_mean']:.4f}, on the test queries alone "
              f"{v['test_only_head_mean']:.4f}, free vectors {v['free_vectors']:.4f}")
    return run.record


def render_ceiling_section(results_dir: str | os.PathLike) -> str:
    """BENCHMARKS.md's section from ``results_dir/ceiling/*.json`` (empty when there is none)."""

    def render(path: Path, rec: dict) -> list[str]:
        r, st = rec["results"], rec["results"]["settings"]
        out = [f"### {r['task']}: `{path.name}`", "",
               f"{r['n_test_queries']} test queries, {r['n_documents']} documents; {st.get('head', 'linear')} head, "
               f"{st['steps']} steps "
               f"(lr {st['lr']:g}, batch {st['batch_size']}, temperature {st['temperature']:g}), seeds "
               f"{', '.join(map(str, st['seeds']))}; {provenance(rec)}", "",
               "| scores | test nDCG@10 |", "|:---|---:|",
               f"| `doc`: cheap encoder zero-shot | {r['doc_zero_shot']:.4f} |",
               f"| `query`: query encoder zero-shot (corpus re-encoded) | {r['query_zero_shot']:.4f} |"]
        for w, v in r["weights"].items():
            seeds = " / ".join(f"{x:.4f}" for x in v["head_per_seed"])
            out += [f"| teacher, W = {w} | {v['teacher']:.4f} |",
                    f"| head distilled from it (seeds {seeds}) | **{v['head_mean']:.4f}** |"]
            if "free_vectors" in v:  # the two probes (files written before they existed lack them)
                alone = " / ".join(f"{x:.4f}" for x in v["test_only_head_per_seed"])
                out += [f"| the head distilled on the test queries alone (seeds {alone}) | "
                        f"{v['test_only_head_mean']:.4f} |",
                        f"| a free vector per test query, fitted alone to the teacher's ranking | "
                        f"{v['free_vectors']:.4f} |"]
        return out

    return records_section(
        results_dir, "ceiling", "Imitating the query encoder: how far a head on the cheap index gets",
        "`benchmarks/strong_ceiling.py` (module docstring): the recommended recipe's anchored head (the type each file "
        "names), distilled toward `cheap·cheap + W · strong·strong` with every document and every judged query of "
        "the task as unlabelled queries, the test queries included (the most favourable setting), then scored on the "
        "test queries. Large W: the query encoder's own ranking. Where shown, two probes say why a gap remains: the "
        "same head distilled on the test queries alone (without documents as queries), and a free vector per test "
        "query fitted alone to its teacher ranking (how closely the frozen index can reproduce that ranking, "
        "nothing shared between queries).", render)

if __name__ == "__main__":
    main()
