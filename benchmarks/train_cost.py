"""Training cost: ERA's adapter (both stages, on cached embeddings) vs fine-tuning the query encoder
with sentence-transformers, and the test nDCG@10 each reaches on the same split.

* ERA: ``era_hf.training.ERATrainer`` with the ``reference`` recipe (stage 1: 100 epochs of
  alignment on up to 1000 documents per task; stage 2: InfoNCE with hard negatives, early
  stopping), on the embedding cache. The first run fills the cache if needed (reported apart,
  with its cache misses); the timed runs then load no encoder at all.
* sentence-transformers: ``SentenceTransformerTrainer`` + ``MultipleNegativesRankingLoss``, 1 epoch,
  batch 16 (no-duplicates sampler), default learning rate, on the SAME (query, positive document)
  pairs ERA's stage 2 trains on (read from the trainer), no reporting. The fine-tuned model is one
  symmetric encoder, so to search with it the corpus must be re-encoded: that time is measured too.

The two trainings run interleaved (ERA, ST, then ST, ERA, ...); the ratio is the median of the
per-round ratios. All methods are scored by ``era_hf.evaluation`` on the same test queries
(``task.split(label_ratio, seed)``).

A cold start can be measured with an empty cache (``--cache-dir $(mktemp -d)``): the first ERA run then
includes encoding everything it needs (reported in ``era_first_run``).

Encoder pair: ``--pair auto`` (default) uses the default pair (MPNet queries -> MiniLM index) when
all its embeddings of the tasks are already in the cache, else MiniLM -> MiniLM (cheap); the JSON
says which.

    python benchmarks/train_cost.py            # -> results/speed/train_cost.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (DATA_DIR, MINILM, MPNET, Run, add_common_args, interleaved, log,  # noqa: E402
                     paired_ratios, set_threads, setup_env, summary)

ST_BATCH_SIZE = 16
ST_EPOCHS = 1


def pick_pair(choice: str, tasks: list[Any], cache: Any) -> tuple[Any, str]:
    """The EncoderPair to train on, and why."""
    from era_hf.task_embeddings import EncoderPair

    default = EncoderPair(MPNET, MINILM, cache=cache, show_progress_bar=False)
    if choice == "default":
        return default, "default pair requested (--pair default)"
    if choice == "minilm":
        return EncoderPair(MINILM, MINILM, cache=cache, show_progress_bar=False), "MiniLM -> MiniLM requested"
    missing = []
    for task in tasks:
        texts = task.document_texts()
        if not cache.contains(default.document_fingerprint(), texts):
            missing.append(f"{task.name}: document-encoder corpus")
        if not cache.contains(default.query_fingerprint(default.document_max_length), texts):
            missing.append(f"{task.name}: query-encoder corpus")
    if not missing:
        return default, "default pair: all corpus embeddings of the tasks are cached"
    return (EncoderPair(MINILM, MINILM, cache=cache, show_progress_bar=False),
            "MiniLM -> MiniLM: the default pair's embeddings are not all cached (" + "; ".join(missing) + ")")


def era_arguments(out_dir: str, label_ratio: float, seed: int) -> Any:
    from era_hf.training import TrainingArguments

    return TrainingArguments.from_recipe("reference", output_dir=out_dir, quiet=True, plot=False, cpu=True,
                                         label_ratio=label_ratio, seed=seed, split_seed=seed)


def training_pairs(trainer: Any, pair: Any) -> list[tuple[str, str, str]]:
    """(task, formatted query, positive document text) of every stage-2 training pair, in ERA's order."""
    data = trainer.data
    by_row = {row: (t, qid) for t, qid, row in data._query_index}
    out = []
    for spec in data.train_specs:
        t, qid = by_row[spec.q_row]
        task = data.infos[t].task
        out.append((task.name, pair.format_queries(task, [qid], "query")[0], task.document_texts()[spec.pos]))
    return out


class StepTimer:
    """A transformers TrainerCallback summing the wall time of optimisation steps (forward + backward + update)."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        timer = self

        class _CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001
                timer._t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
                timer.seconds += time.perf_counter() - timer._t0
                timer.steps += 1

        self.callback = _CB()
        self.seconds = 0.0
        self.steps = 0
        self._t0 = 0.0


def st_finetune(model_id: str, pairs: list[tuple[str, str, str]], seed: int, max_length: int) -> dict[str, Any]:
    """Load a fresh SentenceTransformer and fine-tune it with MNRL; returns the model and its timings."""
    import datasets
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (BatchSamplers,
                                                                          SentenceTransformerTrainingArguments)

    t0 = time.perf_counter()
    model = SentenceTransformer(model_id, device="cpu")
    model.max_seq_length = max_length
    load_s = time.perf_counter() - t0
    ds = datasets.Dataset.from_dict({"anchor": [q for _, q, _ in pairs], "positive": [d for _, _, d in pairs]})
    with tempfile.TemporaryDirectory(prefix="st-bench-") as out:
        targs = SentenceTransformerTrainingArguments(
            output_dir=out, num_train_epochs=ST_EPOCHS, per_device_train_batch_size=ST_BATCH_SIZE, seed=seed,
            batch_sampler=BatchSamplers.NO_DUPLICATES, report_to="none", save_strategy="no",
            logging_strategy="no", disable_tqdm=True, use_cpu=True, dataloader_num_workers=0)
        steps = StepTimer()
        trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=ds,
                                             loss=MultipleNegativesRankingLoss(model), callbacks=[steps.callback])
        t1 = time.perf_counter()
        out_metrics = trainer.train()
        train_s = time.perf_counter() - t1
    return {"model": model, "load_seconds": load_s, "train_seconds": train_s, "step_seconds": steps.seconds,
            "steps": steps.steps, "train_loss": float(out_metrics.training_loss),
            "learning_rate": float(targs.learning_rate)}


def evaluate_st(model: Any, tasks: list[Any], pair: Any, label_ratio: float, seed: int,
                frozen_index: bool) -> dict[str, Any]:
    """Score the fine-tuned ST model on the test queries: corpus re-encoded with it (timed), and, when its
    space is the index's (same model id as the document encoder), also against the frozen original index."""
    from era_hf.evaluation import evaluate_task
    from era_hf.metrics import aggregate_suite

    reencoded, frozen, seconds = {}, {}, {}
    n_docs = 0
    for task in tasks:
        split = task.split(label_ratio, seed)
        q = model.encode(pair.format_queries(task, split.test, "query"), batch_size=32, convert_to_numpy=True,
                         normalize_embeddings=True, show_progress_bar=False)
        texts = task.document_texts()
        t0 = time.perf_counter()
        d = model.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True,
                         show_progress_bar=False)
        seconds[task.name] = time.perf_counter() - t0
        n_docs += len(texts)
        reencoded[task.name] = evaluate_task(task, split, q, d)["metrics"]
        if frozen_index:
            frozen[task.name] = evaluate_task(task, split, q, pair.corpus(task))["metrics"]
    domains = {t.name: t.domain for t in tasks}
    out = {"reencoded_corpus": _scores(aggregate_suite(reencoded, domains), reencoded),
           "reindex_seconds": round(sum(seconds.values()), 3), "reindex_documents": n_docs,
           "reindex_seconds_per_task": {k: round(v, 3) for k, v in seconds.items()}}
    if frozen_index:
        out["frozen_index"] = _scores(aggregate_suite(frozen, domains), frozen)
    return out


def _scores(summary_: dict[str, Any], per_task: dict[str, Any]) -> dict[str, Any]:
    return {"macro_ndcg@10": summary_["macro"]["ndcg@10"],
            "ndcg@10": {name: m["ndcg@10"] for name, m in per_task.items()}}


def _suite_scores(result: dict[str, Any]) -> dict[str, Any]:
    return {"macro_ndcg@10": result["macro"]["ndcg@10"],
            "ndcg@10": {name: r["metrics"]["ndcg@10"] for name, r in result["tasks"].items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--tasks", nargs="+", default=[str(DATA_DIR / "adi"), str(DATA_DIR / "medline")])
    parser.add_argument("--pair", choices=("auto", "default", "minilm"), default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds (default 3)")
    parser.add_argument("--label-ratio", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache-dir", default=None, help="embedding cache (default: era_hf's default cache)")
    args = parser.parse_args(argv)
    setup_env()
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("era_hf.training").setLevel(logging.WARNING)
    from era_hf.cache import EmbeddingCache
    from era_hf.evaluation import evaluate_suite
    from era_hf.tasks import load_suite
    from era_hf.training import ERATrainer

    run = Run("train_cost", args)
    threads = set_threads(args.threads)
    run.results["threads"] = threads
    repeats = 1 if args.quick else args.repeats
    tasks = [t for spec in args.tasks for t in load_suite(spec)]
    cache = EmbeddingCache(args.cache_dir)
    pair, why = pick_pair(args.pair, tasks, cache)
    run.results["pair"] = {"query_encoder": pair.query_encoder_id, "document_encoder": pair.document_encoder_id,
                           "why": why}
    run.results["tasks"] = [{"name": t.name, "documents": len(t.document_ids()),
                             "split": {k: len(v) for k, v in (("train", t.split(args.label_ratio, args.seed).train),
                                                              ("val", t.split(args.label_ratio, args.seed).val),
                                                              ("test", t.split(args.label_ratio, args.seed).test))}}
                            for t in tasks]
    log(f"pair: {why}")

    state: dict[str, Any] = {}

    def era_once() -> None:
        set_threads(threads)
        with tempfile.TemporaryDirectory(prefix="era-bench-") as out:
            trainer = ERATrainer(pair, tasks, era_arguments(out, args.label_ratio, args.seed))
            state["era_model"] = trainer.train()
            state["era_trainer"] = trainer
            state.setdefault("era_logs", []).append(trainer.log)

    # First run: fills the embedding cache when it is cold (its misses are recorded).
    stats0 = dict(cache.stats)
    loaded0 = pair.models_loaded
    t0 = time.perf_counter()
    era_once()
    first = {"seconds": round(time.perf_counter() - t0, 3),
             "cache": {k: cache.stats[k] - stats0[k] for k in ("hits", "misses")},
             "models_loaded": pair.models_loaded - loaded0}
    run.results["era_first_run"] = first
    log(f"ERA first run: {first}")
    pairs = training_pairs(state["era_trainer"], pair)
    state["era_logs"].clear()

    def st_once() -> None:
        set_threads(threads)
        state["st"] = st_finetune(pair.query_encoder_id, pairs, args.seed, pair.document_max_length)
        state.setdefault("st_runs", []).append({k: v for k, v in state["st"].items() if k != "model"})

    stats1 = dict(cache.stats)
    loaded1 = pair.models_loaded
    times = interleaved({"era": era_once, "st": st_once}, repeats, warmup=0, log=log)
    era_logs = state["era_logs"]
    st_runs = state["st_runs"]
    st_train = [r["train_seconds"] for r in st_runs]
    adapt = (era_logs[-1].get("stages") or {}).get("adaptation") or {}
    align = (era_logs[-1].get("stages") or {}).get("alignment") or {}
    run.results["era"] = {
        "recipe": "reference",
        "seconds": summary(times["era"], 3),
        "alignment_seconds": summary([lg["timings"].get("alignment_seconds", 0.0) for lg in era_logs], 3),
        "adaptation_seconds": summary([lg["timings"].get("adaptation_seconds", 0.0) for lg in era_logs], 3),
        "alignment_epochs": align.get("epochs_run"),
        # Texts stage 1 needs from the query encoder (cached here; encoded once on a cold cache).
        "stage1_texts_per_task": {name: c.get("documents", 0) + c.get("queries", 0)
                                  for name, c in (align.get("counts") or {}).items()},
        "adaptation_epochs": adapt.get("epochs_run"),
        "adaptation_stopped_early": adapt.get("stopped_early"),
        "cache_during_timed_runs": {k: cache.stats[k] - stats1[k] for k in ("hits", "misses")},
        "models_loaded_during_timed_runs": pair.models_loaded - loaded1,
        "timed": "ERATrainer(...).train() wall time: data preparation, negative mining, both stages, "
                 "checkpoints and saving the model (no encoder runs: warm cache)",
    }
    run.results["st"] = {
        "loss": "MultipleNegativesRankingLoss", "epochs": ST_EPOCHS, "batch_size": ST_BATCH_SIZE,
        "batch_sampler": "no_duplicates", "learning_rate": st_runs[-1]["learning_rate"],
        "max_seq_length": pair.document_max_length, "model": pair.query_encoder_id,
        "train_pairs": len(pairs),
        "pairs_per_task": {t.name: sum(1 for p in pairs if p[0] == t.name) for t in tasks},
        "seconds": summary(st_train, 3),
        "load_seconds": summary([r["load_seconds"] for r in st_runs], 3),
        "step_seconds": summary([r["step_seconds"] for r in st_runs], 3),
        "steps": st_runs[-1]["steps"],
        "train_loss": st_runs[-1]["train_loss"],
        "timed": "SentenceTransformerTrainer.train() wall time (model loading timed apart in load_seconds); "
                 "step_seconds = forward + backward + optimizer steps only",
    }
    run.results["ratio_st_train_over_era"] = paired_ratios(st_train, times["era"], 3)

    log("evaluating (ERA, baseline, fine-tuned ST; the last re-encodes the corpora) ...")
    methods = {"baseline_document_encoder": "doc", "era": state["era_model"]}
    if pair.query_encoder_id != pair.document_encoder_id:
        methods["baseline_query_encoder"] = "query"
    run.results["ndcg"], run.results["evaluation_runs"] = {}, {}
    for key, method in methods.items():
        result = evaluate_suite(method, tasks, pair, args.label_ratio, args.seed)
        run.results["ndcg"][key] = _suite_scores(result)
        run.results["evaluation_runs"][key] = {"seconds": result["seconds"], "cache": result["cache"],
                                               "models_loaded": result["models_loaded"]}
    set_threads(threads)
    st_eval = evaluate_st(state["st"]["model"], tasks, pair, args.label_ratio, args.seed,
                          frozen_index=pair.query_encoder_id == pair.document_encoder_id)
    run.results["ndcg"]["st_finetuned_reencoded_corpus"] = st_eval["reencoded_corpus"]
    if "frozen_index" in st_eval:
        run.results["ndcg"]["st_finetuned_queries_frozen_index"] = st_eval["frozen_index"]
    run.results["st"]["reindex_seconds"] = st_eval["reindex_seconds"]
    run.results["st"]["reindex_documents"] = st_eval["reindex_documents"]
    run.results["st"]["reindex_seconds_per_task"] = st_eval["reindex_seconds_per_task"]
    st_total = [s + st_eval["reindex_seconds"] for s in st_train]
    run.results["ratio_st_train_plus_reindex_over_era"] = paired_ratios(st_total, times["era"], 3)
    run.notes.append("ERA trains a head on cached embeddings and keeps the index; the fine-tuned ST model is one "
                     "encoder for both sides, so its corpus must be re-encoded (reindex_seconds, measured once "
                     "after the last fine-tuning and added to each round's training time in the second ratio).")
    run.notes.append("ST trains on ERA's stage-2 pairs (one positive per training query); ERA also uses the "
                     "validation queries for early stopping, ST uses none.")
    run.write()
    r = run.results
    log(f"ERA {r['era']['seconds']['median']} s, ST {r['st']['seconds']['median']} s "
        f"(+ re-index {r['st']['reindex_seconds']} s); nDCG@10 base "
        f"{r['ndcg']['baseline_document_encoder']['macro_ndcg@10']:.4f} ERA {r['ndcg']['era']['macro_ndcg@10']:.4f} "
        f"ST {r['ndcg']['st_finetuned_reencoded_corpus']['macro_ndcg@10']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
