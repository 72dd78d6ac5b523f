"""ERA training (era_hf.training, era_hf.train): recipes, CLI flags, stages, determinism, resume,
failure modes, negatives. Small: MiniLM on both sides, the 82-document ADI task or tiny synthetic
tasks, a few epochs; one thread (tiny matrices are slower multi-threaded on a shared 2-core box)."""

from __future__ import annotations

import argparse
import json
import math
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from era_hf.errors import ERAError
from era_hf.training import CheckpointMismatch

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


# ---------------------------------------------------------------------- fixtures / helpers
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def shared_cache_dir() -> Path:
    """A content-addressed embedding cache kept between test runs (warm after the first run): keys name the
    model revision and texts, and damaged entries are recomputed, so sharing it is safe."""
    import tempfile

    return Path(os.environ.get("ERA_HF_TEST_CACHE", Path(tempfile.gettempdir()) / "era_hf_test_cache"))


@pytest.fixture(scope="module")
def cache_dir() -> Path:
    return shared_cache_dir()


@pytest.fixture(scope="module")
def adi(shared_data):
    from era_hf.tasks import load_task

    return load_task(str(shared_data / "adi"))


def write_beir(directory: Path, n_docs: int, n_queries: int, name: str, seed: int = 0,
               rels_per_query: int = 2) -> Path:
    """A small synthetic BEIR task: query i is about topic i, its judged docs mention that topic."""
    rng = random.Random(seed)
    words = ["lift", "drag", "wing", "engine", "fuel", "radar", "orbit", "signal", "cache", "index", "query", "vector"]
    directory.mkdir(parents=True, exist_ok=True)
    docs, qrels = [], []
    for d in range(n_docs):
        topic = d % n_queries
        text = f"{words[topic % len(words)]} report {topic} " + " ".join(rng.choice(words) for _ in range(8))
        docs.append({"_id": f"d{d}", "title": "", "text": text})
    for q in range(n_queries):
        judged = [d for d in range(n_docs) if d % n_queries == q][:rels_per_query]
        qrels += [(f"q{q}", f"d{d}", 1) for d in judged]
    with open(directory / "corpus.jsonl", "w") as f:
        f.writelines(json.dumps(d) + "\n" for d in docs)
    with open(directory / "queries.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": f"q{q}", "text": f"what about {words[q % len(words)]} topic {q}?"}) + "\n"
                     for q in range(n_queries))
    (directory / "qrels").mkdir(exist_ok=True)
    with open(directory / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
    (directory / "meta.json").write_text(json.dumps({"name": name, "domain": "synthetic",
                                                     "instruction": "Find the report."}))
    return directory


def small_args(out: Path, cache_dir: Path, **kw):
    from era_hf.training import TrainingArguments

    align = {"epochs": 3, "batch_size": 32, "checkpoint_every": 100, **kw.pop("alignment", {})}
    adapt = {"epochs": 6, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 100, **kw.pop("adaptation", {})}
    base = dict(output_dir=str(out), query_encoder=MINILM, document_encoder=MINILM, cache_dir=str(cache_dir),
                quiet=True, plot=False, mode="both", label_ratio=0.2)
    base.update(kw)
    return TrainingArguments.from_recipe(base.pop("recipe", "reference"), alignment=align, adaptation=adapt, **base)


def run(tasks, args):
    from era_hf.training import ERATrainer

    trainer = ERATrainer(None, tasks, args)
    model = trainer.train()
    return trainer, model


def load_head_only(out: Path):
    """Load a saved model's config + head weights strictly (what from_pretrained does, minus the encoders)."""
    from era_hf import ERAConfig, ERAModel

    model = ERAModel(ERAConfig.from_pretrained(str(out)))
    model.load_state_dict(head_tensors(out), strict=True)
    return model


def head_tensors(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(out) / "model.safetensors"))


def histories(out: Path) -> dict:
    log = json.loads((Path(out) / "training_log.json").read_text())
    return {s: [{k: v for k, v in h.items() if k != "seconds"} for h in st["history"]]
            for s, st in log["stages"].items() if "history" in st}


# ---------------------------------------------------------------------- recipes and flags
def test_reference_recipe_is_exactly_the_paper_defaults():
    from era_hf.training import AdaptationArguments, AlignmentArguments, TrainingArguments, get_recipe

    ref = get_recipe("reference").arguments()
    assert ref.flat(include_neutral=False) == {**TrainingArguments().flat(include_neutral=False), "recipe": "reference"}
    a, b = ref.alignment, ref.adaptation
    assert (a.loss, a.lr, a.weight_decay, a.batch_size, a.epochs, a.docs_per_task, a.sample_seed, a.eval_ratio,
            a.init, a.include_queries, a.early_stopping_patience) == \
        ("cosine", 1e-3, 0.01, 256, 100, 1000, 42, 0.1, "random", False, None)
    assert (b.lr, b.weight_decay, b.batch_size, b.epochs, b.temperature, b.num_negatives, b.negatives,
            b.teacher_top_k, b.percpos_margin, b.warmup_ratio, b.schedule, b.early_stopping_patience,
            b.early_stopping_metric, b.in_batch_negatives, b.all_positives, b.resample_negatives,
            b.anchor_penalty) == (1e-5, 1e-4, 256, 1000, 0.05, 5, "topk_percpos", 2000, 0.95, 0.1, "linear", 5,
                                  "loss", False, False, False, 0.0)
    assert (ref.head, ref.anchor, ref.label_ratio, ref.seed, ref.split_seed) == ("linear", False, 0.2, 42, 42)
    assert AlignmentArguments() == a and AdaptationArguments() == b
    ridge = get_recipe("ridge_init").arguments()
    assert ridge.alignment.init == "ridge" and ridge.adaptation == b


def test_cli_flags_are_derived_from_the_dataclasses():
    from dataclasses import fields

    from era_hf.train import arguments_from_namespace, build_parser, register_cli
    from era_hf.training import AdaptationArguments, AlignmentArguments

    parser = build_parser()
    text = parser.format_help()
    for cls, phase in ((AlignmentArguments, "alignment"), (AdaptationArguments, "adaptation")):
        for f in fields(cls):
            assert f"--{phase}.{f.name.replace('_', '-')}" in text
    ns = parser.parse_args(["--tasks", "a", "b", "--output", "o", "--alignment.lr", "0.5",
                            "--adaptation.in-batch-negatives", "--adaptation.early-stopping-patience", "none",
                            "--head-kwargs", '{"rank": 4}', "--head", "low_rank_residual",
                            "--alignment.ridge-grid", "0.1", "1", "--recipe", "ridge_init", "--seed", "7"])
    args = arguments_from_namespace(ns)
    assert args.tasks == ["a", "b"] and args.output_dir == "o" and args.seed == 7
    assert args.alignment.lr == 0.5 and args.alignment.init == "ridge"  # recipe value kept
    assert args.alignment.ridge_grid == (0.1, 1.0) and args.alignment.epochs == 100
    assert args.adaptation.in_batch_negatives is True and args.adaptation.early_stopping_patience is None
    assert args.head == "low_rank_residual" and args.head_kwargs == {"rank": 4}
    assert args.query_format == "auto" and args.recipe == "ridge_init"
    with pytest.raises(ERAError, match="alignment.lr"):
        arguments_from_namespace(parser.parse_args(["--tasks", "a", "--output", "o", "--alignment.lr", "-1"]))
    top = argparse.ArgumentParser()
    sub = top.add_subparsers(dest="command")
    register_cli(sub)
    assert "train" in sub.choices


# ---------------------------------------------------------------------- the three modes
def test_both_mode_cli_gives_a_loadable_model_with_log_and_plot(tmp_path, cache_dir, adi, shared_data):
    from transformers import AutoModel

    from era_hf.train import main

    out = tmp_path / "both"
    rc = main(["--tasks", str(shared_data / "adi"), "--query-encoder", MINILM, "--document-encoder", MINILM,
               "--mode", "both", "--label-ratio", "0.2", "--output", str(out), "--cache-dir", str(cache_dir),
               "--alignment.epochs", "3", "--adaptation.epochs", "8", "--adaptation.lr", "1e-3", "--quiet"])
    assert rc == 0
    for name in ("config.json", "model.safetensors", "modeling_era.py", "training_log.json", "loss_curves.png"):
        assert (out / name).is_file(), name
    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = AutoModel.from_pretrained(str(out), trust_remote_code=True)
    cfg = model.config
    assert (cfg.init, cfg.mode, cfg.recipe) == ("random", "both", "reference (modified)")
    assert cfg.training["recipe_overrides"]["alignment.epochs"] == {"recipe": 100, "used": 3}
    emb = model.encode_queries(["how are documents indexed automatically?"])
    assert emb.shape == (1, 384) and abs(float(np.linalg.norm(emb)) - 1) < 1e-5

    log = json.loads((out / "training_log.json").read_text())
    split = adi.split(0.2, 42)
    assert log["tasks"][0]["split"] == split.to_dict()
    assert log["seeds"]["seed"] == 42 and log["arguments"]["adaptation"]["lr"] == 1e-3
    assert log["models"]["query_encoder"]["id"] == MINILM and log["models"]["query_encoder"]["revision"]
    s1, s2 = log["stages"]["alignment"], log["stages"]["adaptation"]
    assert [h["epoch"] for h in s1["history"]] == [0, 1, 2, 3] and s1["init"]["method"] == "random"
    assert s1["counts"]["adi"]["documents"] == 82 and s1["n_eval"] == 8  # max(1, int(82 * 0.1))
    assert s2["pairs"]["adi"]["train_pairs"] == len(split.train) and s2["best_epoch"] >= 1
    assert all(math.isfinite(h["val_loss"]) for h in s2["history"])
    assert log["timings"]["total_seconds"] > 0
    assert (out / "checkpoints" / "adaptation" / "training_state.json").is_file()


def test_label_only_and_alignment_only(tmp_path, cache_dir, adi):
    # label_only: stage 2 from random init, teacher = the document encoder's own query embeddings
    trainer, _ = run([adi], small_args(tmp_path / "lo", cache_dir, mode="label_only"))
    assert "alignment" not in trainer.log["stages"]
    assert trainer.log["stages"]["adaptation"]["teacher"] == "document"
    model = load_head_only(tmp_path / "lo")
    assert (model.config.mode, model.config.init) == ("label_only", "random")

    # alignment_only with the closed-form ridge init vs 3 SGD epochs on the same held-out pairs
    t_ridge, _ = run([adi], small_args(tmp_path / "ridge", cache_dir, mode="alignment_only",
                                       alignment={"init": "ridge"}))
    t_sgd, _ = run([adi], small_args(tmp_path / "sgd", cache_dir, mode="alignment_only",
                                     alignment={"init": "random", "epochs": 3}))
    ridge_cos = 1 - t_ridge.log["stages"]["alignment"]["history"][-1]["eval_loss"]
    sgd_cos = 1 - t_sgd.log["stages"]["alignment"]["history"][-1]["eval_loss"]
    assert ridge_cos >= sgd_cos  # 73 training texts in 384 dims: ridge cannot reach the identity
    info = t_ridge.log["stages"]["alignment"]["init"]
    assert info["method"] == "ridge" and abs(info["heldout_cosine"] - ridge_cos) < 1e-4
    model = load_head_only(tmp_path / "ridge")
    assert (model.config.mode, model.config.init, model.config.label_ratio) == ("alignment_only", "ridge", None)
    assert "adaptation" not in t_ridge.log["stages"]


def test_ridge_and_procrustes_beat_sgd_on_a_synthetic_map():
    from era_hf.training import alignment as stage1
    from era_hf.training.data import AlignmentData

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(600, 24, generator=g), dim=-1)
    rot = torch.linalg.qr(torch.randn(24, 24, generator=g))[0]
    y = torch.nn.functional.normalize(x @ rot + 0.05 * torch.randn(600, 24, generator=g), dim=-1)
    data = AlignmentData(x[:540], y[:540], x[540:], y[540:], {})
    from era_hf.heads import build_head
    from era_hf.training.arguments import AlignmentArguments

    for init in ("ridge", "procrustes"):
        head = build_head("linear", 24, 24)
        info = stage1.closed_form_init(head, data, AlignmentArguments(init=init))
        with torch.no_grad():
            cos = float(torch.nn.functional.cosine_similarity(head(x[540:]), y[540:]).mean())
        assert abs(cos - info["heldout_cosine"]) < 1e-4
        torch.manual_seed(0)
        sgd = build_head("linear", 24, 24)
        opt = torch.optim.AdamW(sgd.parameters(), lr=1e-3, weight_decay=0.01)
        for _ in range(3):
            for s in range(0, 540, 256):
                loss = stage1.loss_values("cosine", sgd(x[s:s + 256]), y[s:s + 256]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            sgd_cos = float(torch.nn.functional.cosine_similarity(sgd(x[540:]), y[540:]).mean())
        assert cos >= sgd_cos and cos > 0.95
    with pytest.raises(ERAError, match="equal dims"):
        stage1.procrustes_fit(x[:, :10], y, x[:5, :10], y[:5])


def test_anchored_head_skips_stage1(tmp_path, cache_dir, adi):
    trainer, model = run([adi], small_args(tmp_path / "anch", cache_dir, anchor=True))
    assert "skipped" in trainer.log["stages"]["alignment"]
    assert model.config.anchor and model.config.init.startswith("zero")
    cfg = json.loads((tmp_path / "anch" / "config.json").read_text())
    assert cfg["anchor"] is True and cfg["mode"] == "both"


# ---------------------------------------------------------------------- determinism and resume
def test_two_runs_give_identical_heads_with_all_stage2_options(tmp_path, cache_dir, adi):
    opts = {"in_batch_negatives": True, "resample_negatives": True, "all_positives": True, "anchor_penalty": 0.1,
            "early_stopping_metric": "ndcg@10", "batch_size": 8}
    for name in ("a", "b"):
        run([adi], small_args(tmp_path / name, cache_dir, adaptation=opts))
    ha, hb = head_tensors(tmp_path / "a"), head_tensors(tmp_path / "b")
    assert ha.keys() == hb.keys() and all(torch.equal(ha[k], hb[k]) for k in ha)
    assert histories(tmp_path / "a") == histories(tmp_path / "b")
    log = json.loads((tmp_path / "a" / "training_log.json").read_text())
    assert "val_ndcg@10" in log["stages"]["adaptation"]["history"][-1]
    split = adi.split(0.2, 42)
    n_pos = sum(sum(1 for s in adi.qrels[q].values() if s > 0) for q in split.train)
    assert log["stages"]["adaptation"]["n_train_pairs"] == n_pos  # all positives


def test_resume_after_stage1_and_mid_stage2_is_identical(tmp_path, cache_dir, adi):
    from era_hf.training import TrainingStopped

    ck = {"alignment": {"checkpoint_every": 1}, "adaptation": {"checkpoint_every": 1}}
    run([adi], small_args(tmp_path / "full", cache_dir, **ck))
    out = tmp_path / "resumed"
    with pytest.raises(TrainingStopped):
        run([adi], small_args(out, cache_dir, stop_after="alignment", **ck))
    assert (out / "checkpoints" / "alignment" / "training_state.json").is_file()
    assert not (out / "model.safetensors").exists()
    with pytest.raises(ERAError, match="--resume"):
        run([adi], small_args(out, cache_dir))
    with pytest.raises(TrainingStopped):
        run([adi], small_args(out, cache_dir, resume=True, stop_after="adaptation:2", **ck))
    from era_hf.training.state_io import load_state

    state = load_state(out / "checkpoints" / "adaptation", "training_state")
    assert state["loop"]["epoch"] == 2 and not state["complete"]
    run([adi], small_args(out, cache_dir, resume=True, **ck))
    a, b = head_tensors(tmp_path / "full"), head_tensors(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert histories(tmp_path / "full") == histories(out)
    with pytest.raises(CheckpointMismatch, match="other settings"):
        run([adi], small_args(out, cache_dir, resume=True, adaptation={"lr": 5e-4}))


def test_checkpoint_of_another_format_is_refused_and_overwrite_starts_over(tmp_path, cache_dir, adi):
    from era_hf.atomic import atomic_write_text
    from era_hf.training import TrainingStopped

    ck = {"alignment": {"checkpoint_every": 1}, "adaptation": {"checkpoint_every": 1}}
    out = tmp_path / "old"
    with pytest.raises(TrainingStopped):
        run([adi], small_args(out, cache_dir, stop_after="alignment", **ck))
    marker = out / "checkpoints" / "alignment" / "training_state.json"
    record = json.loads(marker.read_text())
    fmt = record["state"]["format"]
    record["state"]["format"] = fmt - 1  # as an older era_hf wrote it
    atomic_write_text(marker, json.dumps(record))
    with pytest.raises(CheckpointMismatch, match="unknown format.*--overwrite"):
        run([adi], small_args(out, cache_dir, resume=True, **ck))
    # --overwrite discards those checkpoints: the run equals a fresh one, with other settings too
    other = {"lr": 5e-4, "checkpoint_every": 1}
    run([adi], small_args(out, cache_dir, overwrite=True, alignment=ck["alignment"], adaptation=other))
    run([adi], small_args(tmp_path / "fresh", cache_dir, alignment=ck["alignment"], adaptation=other))
    a, b = head_tensors(tmp_path / "fresh"), head_tensors(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads(marker.read_text())["state"]["format"] == fmt


def test_resume_with_encoders_of_other_dims_fails(tmp_path, cache_dir, adi):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from era_hf.training import TrainingStopped

    tiny = tmp_path / "tiny-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(tiny)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(tiny)
    out = tmp_path / "dims"
    with pytest.raises(TrainingStopped):  # a 32 -> 384 head (non-square: ridge init works too)
        run([adi], small_args(out, cache_dir, query_encoder=str(tiny), stop_after="alignment",
                              alignment={"init": "ridge"}))
    with pytest.raises(ERAError, match=r"32->384 head.*384-d queries"):
        run([adi], small_args(out, cache_dir, resume=True, alignment={"init": "ridge"}))


# ---------------------------------------------------------------------- failure modes
@pytest.mark.parametrize("stage", ["alignment", "adaptation"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_loss_stops_with_a_clear_error_and_saves_nothing(tmp_path, cache_dir, adi, monkeypatch, stage,
                                                                     bad):
    import importlib

    module = importlib.import_module(f"era_hf.training.{stage}")
    real = module.make_loss_fn

    def poisoned(data, args):
        fn = real(data, args)
        return lambda model, shard, batch: fn(model, shard, batch) * bad

    monkeypatch.setattr(module, "make_loss_fn", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(ERAError, match=rf"stage '{stage}'.*epoch 1"):
        run([adi], small_args(out, cache_dir))
    assert not (out / "model.safetensors").exists()
    assert not (out / "checkpoints" / stage / "training_state.json").exists()


def test_unwritable_output_fails_before_any_encoding(tmp_path, adi, monkeypatch):
    from era_hf.training import data as data_mod

    def no_encoding(*a, **k):
        raise AssertionError("encoding started")

    monkeypatch.setattr(data_mod.Embedder, "query_side", no_encoding)
    monkeypatch.setattr(data_mod.Embedder, "document_side", no_encoding)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ERAError, match="not writable"):
        run([adi], small_args(blocker / "out", tmp_path / "cache"))
    if os.geteuid() != 0:  # root ignores directory permissions
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(ERAError, match="not writable"):
            run([adi], small_args(ro, tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()


def test_no_train_query_falls_back_to_one_and_missing_positives_are_counted(tmp_path, cache_dir):
    from era_hf.tasks import RetrievalTask, load_task

    syn = load_task(str(write_beir(tmp_path / "syn", n_docs=40, n_queries=10, name="syn")))
    with pytest.warns(UserWarning, match="falling back to 1 query"):
        trainer, _ = run([syn], small_args(tmp_path / "fb", cache_dir, label_ratio=0.05))
    assert trainer.log["tasks"][0]["split"]["n_train"] == 1
    assert "falling back" in trainer.log["tasks"][0]["warnings"][0]
    import warnings

    from era_hf.training.data import prepare_tasks

    thirty = load_task(str(write_beir(tmp_path / "thirty", n_docs=40, n_queries=30, name="thirty")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0.05 x 30 judged queries = 1.5: one query by the ratio itself, no fallback
        (info,) = prepare_tasks([thirty], small_args(tmp_path / "t", cache_dir, label_ratio=0.05))
    assert len(info.split.train) == 1 and not info.warnings

    # queries whose only positive is not in the corpus are skipped and counted
    qrels = {q: dict(v) for q, v in syn.qrels.items()}
    missing = {"q1", "q4", "q7"}
    for q in missing:
        qrels[q] = {"not-in-corpus": 1}
    broken = RetrievalTask(name="broken", domain="synthetic", instruction="", corpus=syn.corpus,
                           queries=syn.queries, qrels=qrels, source="test")
    trainer, _ = run([broken], small_args(tmp_path / "miss", cache_dir, label_ratio=0.4))
    split = broken.split(0.4, 42)
    st = trainer.log["stages"]["adaptation"]["pairs"]["broken"]
    assert st["skipped_no_positive_in_corpus"] == len(missing & set(split.train + split.val)) > 0
    assert st["train_pairs"] == len(set(split.train) - missing)


# ---------------------------------------------------------------------- negatives
def test_complement_matches_a_list():
    from era_hf.training.negatives import Complement

    rng = random.Random(1)
    for _ in range(50):
        n = rng.randint(0, 60)
        ex = rng.sample(range(n), rng.randint(0, n)) if n else []
        c = Complement(n, ex)
        expected = [i for i in range(n) if i not in set(ex)]
        assert list(c) == expected and len(c) == len(expected)
        if expected:  # random.sample draws the same items from the lazy population as from the list
            k = min(5, len(expected))
            assert random.Random(3).sample(c, k) == random.Random(3).sample(expected, k)


@pytest.mark.parametrize("strategy", ["topk_percpos", "naive_topk", "random"])
def test_mined_negatives_are_never_judged(strategy):
    from era_hf.training import negatives as neg

    g = np.random.default_rng(0)
    corpus = g.normal(size=(300, 16)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    judged = [sorted(g.choice(300, size=8, replace=False).tolist()) for _ in range(40)]
    # teacher queries sit right on their judged docs (the positive ex[0] first): judged docs are the top hits
    teacher = np.stack([3 * corpus[j[0]] + corpus[j].mean(0) for j in judged])
    ranked = neg.rank_candidates(teacher, corpus, judged, top_k=50)
    chunked = neg.rank_candidates(teacher, corpus, judged, top_k=50, chunk_rows=37)  # running top-k merge
    for (i1, s1), (i2, s2) in zip(ranked, chunked):
        assert np.allclose(s1, s2, atol=1e-6) and set(i1.tolist()) == set(i2.tolist())
    rng = random.Random(0)
    for i, ex in enumerate(judged):
        idx, scores = ranked[i]
        assert not set(idx.tolist()) & set(ex) and np.all(np.diff(scores) <= 1e-6)
        pos_score = neg.teacher_score(teacher[i], corpus[ex[0]])
        cands = neg.hard_candidates(strategy, idx, scores, pos_score, 5, 0.95)
        negs = neg.draw_negatives(strategy, rng, 300, ex, cands, 5)
        assert len(negs) == 5 and len(set(negs)) == 5 and not set(negs) & set(ex)
        if strategy == "topk_percpos":
            below = [int(j) for j, s in zip(idx, scores) if s < 0.95 * pos_score]
            assert len(below) >= 10 and negs[0] == below[0] and set(negs) <= set(below[:10])
        elif strategy == "naive_topk":
            assert negs == [int(j) for j in idx[:5]]
    assert neg.draw_negatives(strategy, rng, 10, list(range(7)), [], 5) is None  # too few non-judged docs


def test_pooled_tasks_take_negatives_from_their_own_corpus(tmp_path, cache_dir, adi):
    from era_hf.tasks import load_task

    syn = load_task(str(write_beir(tmp_path / "syn2", n_docs=30, n_queries=12, name="syn2")))
    trainer, _ = run([adi, syn], small_args(tmp_path / "pool", cache_dir,
                                           adaptation={"in_batch_negatives": True, "batch_size": 16}))
    data = trainer.data
    offsets = np.asarray([i.offset for i in data.infos] + [data.infos[-1].offset + data.infos[-1].n_docs])
    qid_of = {row: (t, qid) for t, qid, row in data._query_index}
    for ps in (data.train, data.val):
        task_of_doc = np.searchsorted(offsets, data.doc_keys, side="right") - 1
        for i in range(len(ps)):
            t = int(ps.task[i])
            rows = [int(ps.positive[i]), *ps.negatives[i].tolist()]
            assert (task_of_doc[rows] == t).all()
            info = data.infos[t]
            tq, qid = qid_of[int(ps.query[i])]
            assert tq == t
            judged = {info.offset + info.doc_row[d] for d in info.task.qrels[qid]}
            assert not judged & set(data.doc_keys[ps.negatives[i].tolist()].tolist())
            assert data.doc_keys[int(ps.positive[i])] in judged
    stats = trainer.log["stages"]["adaptation"]["pairs"]
    assert stats["adi"]["train_pairs"] > 0 and stats["syn2"]["train_pairs"] > 0


# ---------------------------------------------------------------------- other entry points and options
def test_train_function_on_a_suite_directory_with_query_texts_in_stage1(tmp_path, cache_dir):
    from era_hf.training import TrainingArguments, train

    suite = tmp_path / "suite"
    write_beir(suite / "t1", n_docs=30, n_queries=12, name="t1", seed=1)
    write_beir(suite / "t2", n_docs=24, n_queries=12, name="t2", seed=2)
    args = small_args(tmp_path / "out", cache_dir, tasks=[str(suite)], anchor=True,
                      alignment={"include_queries": True, "anchored": "ensemble", "init": "ridge"})
    assert isinstance(args, TrainingArguments)
    out = train(args)
    log = json.loads((out / "training_log.json").read_text())
    assert [t["name"] for t in log["tasks"]] == ["t1", "t2"]
    counts = log["stages"]["alignment"]["counts"]
    n_q = {t["name"]: t["split"]["n_train"] + t["split"]["n_val"] for t in log["tasks"]}
    assert counts == {"t1": {"documents": 30, "queries": n_q["t1"]}, "t2": {"documents": 24, "queries": n_q["t2"]}}
    cfg = load_head_only(out).config
    assert cfg.anchor and cfg.init == "ridge" and cfg.recipe == "reference (modified)"


def test_trainer_continues_from_a_given_model(tmp_path, cache_dir, adi):
    from era_hf.training import ERATrainer

    run([adi], small_args(tmp_path / "first", cache_dir, mode="alignment_only"))
    start = load_head_only(tmp_path / "first")
    before = {k: v.clone() for k, v in start.head.state_dict().items()}
    args = small_args(tmp_path / "second", cache_dir, mode="label_only", adaptation={"epochs": 2})
    model = ERATrainer(start, [adi], args).train()
    assert model.config.init == "given model" and model.config.mode == "label_only"
    assert any(not torch.equal(before[k], v) for k, v in model.head.state_dict().items())


def test_each_run_gets_the_device_it_asks_for_in_one_process():
    """accelerate reuses a process's first state: without a reset, cpu=False after cpu=True stays on the CPU."""
    from accelerate.state import AcceleratorState, PartialState

    from era_hf.training.trainer import make_accelerator

    # A fresh process: an Accelerator an earlier test built itself is the caller's, kept by design (next tests).
    AcceleratorState._reset_state(reset_partial_state=True)
    for cpu in (True, False, True):
        make_accelerator(cpu=cpu)
        assert PartialState()._cpu is cpu


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the caller's Accelerator is on the GPU: "
                                                     "the next test covers that case")
def test_a_callers_own_accelerator_is_kept_not_reset():
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from era_hf.training.trainer import make_accelerator

    from accelerate.state import PartialState

    AcceleratorState._reset_state(reset_partial_state=True)  # as in a fresh process
    mine = Accelerator()  # the caller's, made before training (on this CPU machine: the CPU)
    for _ in range(2):
        ours = make_accelerator(cpu=True)  # the same device: used as it is, never reset
        assert ours.device == mine.device and PartialState()._cpu is False
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: a caller's Accelerator on the GPU")
def test_a_callers_accelerator_on_another_device_is_refused_and_ours_follow_the_request():
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    from era_hf.training.trainer import make_accelerator

    AcceleratorState._reset_state(reset_partial_state=True)
    mine = Accelerator()  # the caller's, on the GPU
    with pytest.raises(ERAError, match="cannot take effect"):
        make_accelerator(cpu=True)
    assert mine.device.type == "cuda" and PartialState().device.type == "cuda"  # left as it was
    AcceleratorState._reset_state(reset_partial_state=True)
    assert [make_accelerator(cpu=cpu).device.type for cpu in (True, False, True)] == ["cpu", "cuda", "cpu"]
    AcceleratorState._reset_state(reset_partial_state=True)


# ---------------------------------------------------------------------- an earlier run's output, conflicting flags
def _cli(shared_data, out, cache_dir, *extra):
    from era_hf.train import main

    return main(["--tasks", str(shared_data / "adi"), "--query-encoder", MINILM, "--document-encoder", MINILM,
                 "--output", str(out), "--cache-dir", str(cache_dir), "--quiet", "--no-plot", *extra])


def test_a_finished_model_without_checkpoints_is_replaced_only_with_overwrite(tmp_path, cache_dir, adi, shared_data,
                                                                             monkeypatch, capsys):
    import shutil

    from era_hf.training import data as data_mod

    out = tmp_path / "model"
    quick = ("--mode", "alignment_only", "--alignment.init", "ridge")
    assert _cli(shared_data, out, cache_dir, *quick) == 0
    shutil.rmtree(out / "checkpoints")  # e.g. a model kept by `era-hf benchmark --keep-models`, or copied
    before = {name: (out / name).read_bytes() for name in ("config.json", "model.safetensors", "training_log.json")}
    capsys.readouterr()

    def no_encoding(*a, **k):
        raise AssertionError("encoding started")

    with monkeypatch.context() as m:  # refused before any encoding
        m.setattr(data_mod.Embedder, "query_side", no_encoding)
        m.setattr(data_mod.Embedder, "document_side", no_encoding)
        assert _cli(shared_data, out, cache_dir, "--mode", "both", "--alignment.epochs", "2",
                    "--adaptation.epochs", "2") == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err
        assert str(out) in err and "already holds a trained model" in err
        assert "--overwrite" in err and "another --output" in err
        # --resume has no checkpoint to continue: refused as a CheckpointMismatch (a caller that owns the
        # folder, like `era-hf demo`, starts over with overwrite)
        with pytest.raises(CheckpointMismatch, match=r"no checkpoints: --resume has nothing to continue.*--overwrite"):
            run([adi], small_args(out, cache_dir, mode="alignment_only", resume=True))
    assert {name: (out / name).read_bytes() for name in before} == before  # nothing was replaced

    assert _cli(shared_data, out, cache_dir, "--overwrite", "--mode", "both", "--alignment.epochs", "2",
                "--adaptation.epochs", "2", "--adaptation.lr", "1e-3") == 0
    assert (out / "model.safetensors").read_bytes() != before["model.safetensors"]
    assert load_head_only(out).config.mode == "both"
    # the run's own checkpoints now sit beside its model: the usual rules apply again
    assert _cli(shared_data, out, cache_dir, *quick) == 2
    assert "holds checkpoints of an earlier run" in capsys.readouterr().err


def test_resume_and_overwrite_conflict(tmp_path, cache_dir, shared_data, capsys):
    from era_hf.training import TrainingArguments

    with pytest.raises(ERAError, match="--resume and --overwrite conflict"):
        TrainingArguments(tasks=["t"], output_dir="o", resume=True, overwrite=True).validate()
    assert _cli(shared_data, tmp_path / "out", cache_dir, "--resume", "--overwrite") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --resume and --overwrite conflict") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_alignment_tasks_that_no_step_reads_are_refused(tmp_path, cache_dir, adi, shared_data, capsys):
    from era_hf.training import ERATrainer

    assert _cli(shared_data, tmp_path / "out", cache_dir, "--mode", "label_only",
                "--alignment-tasks", str(shared_data / "adi")) == 2
    err = capsys.readouterr().err
    assert "alignment_tasks: no step of this run reads them" in err and "label_only" in err
    assert "--alignment-tasks" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    # given to the trainer apart from the arguments, too
    with pytest.raises(ERAError, match="alignment_tasks: no step of this run reads them.*label_only"):
        ERATrainer(None, [adi], small_args(tmp_path / "x", cache_dir, mode="label_only"), alignment_tasks=[adi])
    # an anchored head whose stage 1 is skipped reads them no more
    with pytest.raises(ERAError, match="no step of this run reads them.*anchored skip"):
        ERATrainer(None, [adi], small_args(tmp_path / "x", cache_dir, anchor=True), alignment_tasks=[adi])
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("side", ["query", "document"])
def test_an_encoder_folder_that_is_not_a_model_is_named(tmp_path, cache_dir, shared_data, side, capsys):
    from era_hf.train import main

    not_a_model = shared_data / "adi"  # a task folder
    encoders = {"query": MINILM, "document": MINILM, side: str(not_a_model)}
    rc = main(["--tasks", str(shared_data / "adi"), "--query-encoder", encoders["query"], "--document-encoder",
               encoders["document"], "--output", str(tmp_path / "out"), "--cache-dir", str(cache_dir), "--quiet",
               "--no-plot"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "Traceback" not in err
    assert f"{side} encoder {str(not_a_model)!r} (--{side}-encoder) is a directory but not a transformers model" in err
    assert not (tmp_path / "out" / "model.safetensors").exists()
