"""Listwise distillation of the fused scores into the anchored score map (alignment.distill_steps)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import MINILM, MPNET
from test_training import (adi, cache_dir, head_tensors, load_head_only, run, small_args,  # noqa: F401 (fixtures)
                           write_beir)

from era_hf.errors import ERAError
from era_hf.training import get_recipe
from era_hf.training.losses import listwise_distillation_loss


def distill_args(out, cache_dir, *, head="linear", **alignment):
    return small_args(out, cache_dir, recipe="recommended", query_encoder=MPNET, document_encoder=MINILM, head=head,
                      alignment={"distill_steps": 15, "distill_batch_size": 16, **alignment},
                      adaptation={"epochs": 1})


def test_loss_ignores_excluded_documents_and_keeps_gradients_finite():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(4, 6, generator=g)
    student = torch.randn(4, 6, generator=g, requires_grad=True)
    exclude = torch.zeros(4, 6, dtype=torch.bool)
    exclude[torch.arange(4), torch.tensor([0, 2, 5, 1])] = True
    loss = listwise_distillation_loss(student, teacher, 0.5, exclude)
    loss.sum().backward()
    assert loss.shape == (4,) and bool((loss > 0).all()) and bool(torch.isfinite(student.grad).all())
    assert float(student.grad[exclude].abs().sum()) == 0.0  # an excluded document gets no gradient
    moved_teacher, moved_student = teacher.clone(), student.detach().clone()
    moved_teacher[exclude] += 100.0
    moved_student[exclude] -= 100.0
    assert torch.allclose(listwise_distillation_loss(moved_student, moved_teacher, 0.5, exclude), loss.detach())


def test_data_has_the_sampled_documents_pseudo_queries_and_non_test_queries(tmp_path, cache_dir):
    from era_hf.cache import EmbeddingCache
    from era_hf.task_embeddings import EncoderPair
    from era_hf.tasks import load_task
    from era_hf.training.data import Embedder, build_distillation_data, non_test_query_ids, prepare_tasks

    task = load_task(str(write_beir(tmp_path / "synth", n_docs=30, n_queries=12, name="synth")))
    args = distill_args(tmp_path / "out", cache_dir, distill_docs_per_task=10, distill_pseudo_queries=4)
    embedder = Embedder(EncoderPair(MPNET, MINILM, cache=EmbeddingCache(cache_dir)))
    infos = prepare_tasks([task], args)
    (group,) = build_distillation_data(infos, embedder, args)
    non_test = non_test_query_ids(infos[0], args)
    assert 0 < len(non_test) < 12  # the test split stays out
    assert group.docs.shape == (10, 384) and group.docs_strong.shape == (10, 768)
    assert group.n_queries == 4 + len(non_test) and group.anchors.shape == (group.n_queries, 384)
    own = group.own_doc
    assert (own[:4] >= 0).all() and (own[4:] == -1).all() and len(set(own[:4].tolist())) == 4
    # a document used as a query is that very document, in both encoders' views
    assert torch.equal(group.anchors[:4], group.docs[own[:4]]) and torch.equal(group.queries[:4], group.docs_strong[own[:4]])
    queries = embedder.queries(task, non_test, "query")
    assert np.allclose(group.queries[4:].numpy(), queries)


def test_without_judged_queries_the_distillation_ranks_documents_and_unjudged_queries_only(tmp_path, cache_dir):
    import json

    from era_hf.cache import EmbeddingCache
    from era_hf.task_embeddings import EncoderPair
    from era_hf.tasks import load_task
    from era_hf.training.data import Embedder, build_distillation_data, prepare_tasks

    folder = write_beir(tmp_path / "synth", n_docs=30, n_queries=12, name="synth")
    with open(folder / "queries.jsonl", "a") as f:  # a query log: texts without judgments
        f.writelines(json.dumps({"_id": f"log{i}", "text": f"logged question {i} about lift"}) + "\n" for i in range(3))
    task = load_task(str(folder))
    embedder = Embedder(EncoderPair(MPNET, MINILM, cache=EmbeddingCache(cache_dir)))
    groups = {}
    for judged in (True, False):
        args = distill_args(tmp_path / "out", cache_dir, distill_docs_per_task=10, distill_pseudo_queries=4,
                            distill_judged_queries=judged)
        (groups[judged],) = build_distillation_data(prepare_tasks([task], args), embedder, args)
    non_test_judged = [q for q in task.judged_query_ids() if q not in set(task.split(0.2, 42).test)]
    assert non_test_judged and groups[True].n_queries == 4 + len(non_test_judged) + 3
    assert groups[False].n_queries == 4 + 3  # the pseudo-queries and the log, in the same order as before
    assert torch.equal(groups[False].queries[:4], groups[True].queries[:4])
    assert np.allclose(groups[False].queries[4:].numpy(), embedder.queries(task, ["log0", "log1", "log2"], "query"))


def test_distilling_over_a_whole_large_corpus_warns_and_names_the_cap(tmp_path, cache_dir, monkeypatch):
    import warnings

    from era_hf.cache import EmbeddingCache
    from era_hf.task_embeddings import EncoderPair
    from era_hf.tasks import load_task
    from era_hf.training import data

    monkeypatch.setattr(data, "LARGE_DISTILLATION_CORPUS", 20)  # "large" = more than 20 documents, for a small test
    task = load_task(str(write_beir(tmp_path / "synth", n_docs=30, n_queries=12, name="synth")))
    embedder = data.Embedder(EncoderPair(MPNET, MINILM, cache=EmbeddingCache(cache_dir)))
    args = distill_args(tmp_path / "out", cache_dir)
    with pytest.warns(UserWarning, match="task 'synth': the distillation ranks all 30 .*distill-docs-per-task"):
        data.build_distillation_data(data.prepare_tasks([task], args), embedder, args)
    capped = distill_args(tmp_path / "out", cache_dir, distill_docs_per_task=25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a cap the user chose: no warning, even above the threshold
        data.build_distillation_data(data.prepare_tasks([task], capped), embedder, capped)


def test_distilled_stage1_learns_the_fused_ranking_deterministically(tmp_path, cache_dir, adi):
    trainer, model = run([adi], distill_args(tmp_path / "a", cache_dir, distill_steps=40))
    init = trainer.log["stages"]["alignment"]["init"]
    record = init["distillation"]
    assert init["method"] == "score+distill" and model.config.init == "score+distill"
    assert "val_ndcg@10" not in init  # no weight picked on labels
    assert record["steps"] == 40 and record["tasks"]["adi"]["documents"] == len(adi.document_ids())
    assert record["loss_last_tenth"] < 0.8 * record["loss_first_tenth"]
    from era_hf.model_card import build_model_card

    text = build_model_card(tmp_path / "a").text
    # the recipe's teacher: the fused scores and BM25
    assert "score map distilled from both encoders' fused scores and BM25 (teacher weight 1, lexical weight 1, " \
           "40 steps, loss" in text
    assert "score-map weight" not in text  # nothing was picked on labels
    again, _ = run([adi], distill_args(tmp_path / "b", cache_dir, distill_steps=40))
    first, second = head_tensors(tmp_path / "a"), head_tensors(tmp_path / "b")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_result_hashes_hold_the_distillation_settings_only_where_it_runs():
    from era_hf.benchmark import _hash_arguments

    def distill_keys(flat):
        return {k for k in flat if k.startswith("alignment.distill_")}

    off = get_recipe("recommended").arguments(tasks=["x"], output_dir="out", alignment={"distill_steps": 0})
    assert not distill_keys(_hash_arguments(off, True))  # off: results stored before the option keep their hash
    on = get_recipe("recommended").arguments(tasks=["x"], output_dir="out")
    flat = _hash_arguments(on, True)
    assert flat["alignment.distill_steps"] == 300 and flat["alignment.distill_temperature"] == 0.05
    assert "alignment.score_weight_guard" not in flat  # resolved to 'none': no weight for the guard to veto
    assert _hash_arguments(on, True, has_alignment_tasks=True) == flat  # it distils on another index too
    assert flat["adaptation.lexical_margin_se"] == 0.0  # and searches in hybrid ('auto')
    picked = _hash_arguments(off, True, has_alignment_tasks=True)  # there the weight pick runs under the guard
    assert not distill_keys(picked) and picked["alignment.score_weight_guard"] == "clarity"
    label_only = get_recipe("recommended").arguments(tasks=["x"], output_dir="out", mode="label_only")
    assert not distill_keys(_hash_arguments(label_only, True))  # no stage 1 at all


def test_the_distillation_runs_on_another_index_too_and_the_weight_options_need_it_off():
    from era_hf.training import ERATrainer
    from era_hf.training.arguments import distills, resolved_score_weight_guard

    index = get_recipe("recommended").arguments(tasks=["x"], alignment_tasks=["y"], output_dir="out")
    assert distills(index) and resolved_score_weight_guard(index, True) == "none"
    margin = {"score_weight_margin_se": 1.0}
    for given in ({"alignment_tasks": ["y"]}, {}):  # in the arguments or apart, as the trainer's
        args = get_recipe("recommended").arguments(tasks=["x"], output_dir="out", alignment=margin)
        with pytest.raises(ERAError, match="no weight to pick"):
            ERATrainer(None, ["x"], args, **given)
    picked = get_recipe("recommended").arguments(tasks=["x"], alignment_tasks=["y"], output_dir="out",
                                                 alignment={**margin, "distill_steps": 0})
    picked.validate()  # no refusal: there is a weight to pick
    assert not distills(picked) and resolved_score_weight_guard(picked, True) == "clarity"
    assert resolved_score_weight_guard(picked, False) == "none"  # the labels are the index's: no guard


@pytest.mark.parametrize("recipe, alignment, message", [
    ("reference", {"distill_steps": 10}, "needs --anchor"),
    ("recommended", {"score_weight_margin_se": 1.0}, "distill-steps 0 to pick the weight"),
    ("recommended", {"distill_steps": 10, "score_weight_guard": "clarity"}, "no weight to pick"),
    ("recommended", {"distill_steps": -1}, "distill_steps must be an integer >= 0"),
    ("recommended", {"distill_steps": 10, "distill_temperature": 0}, "distill_temperature must be a number > 0"),
    ("recommended", {"distill_batch_size": 2.5}, "distill_batch_size must be an integer > 0"),
])
def test_bad_settings_are_refused_by_name(recipe, alignment, message):
    args = get_recipe(recipe).arguments(tasks=["x"], output_dir="out", alignment=alignment)
    with pytest.raises(ERAError, match=message):
        args.validate()


def test_card_states_a_distilled_map_without_its_losses_when_the_log_lacks_numbers():
    from era_hf.model_card import _training_section

    record = {"teacher_weight": 1.0, "steps": 10, "loss_first_tenth": "n/a"}  # a hand-edited or truncated log
    log = {"stages": {"alignment": {"init": {"method": "score+distill", "weight": 1.0, "distillation": record}}}}
    (line,) = _training_section(log)["stages"]
    assert line == "**alignment**: score map distilled from both encoders' fused scores (teacher weight 1, 10 steps; no labels)"


def stage2_distill_args(out, cache_dir, weight, **kw):
    return small_args(out, cache_dir, recipe="recommended", query_encoder=MPNET, document_encoder=MINILM,
                      alignment={"distill_steps": 10, "distill_batch_size": 16},
                      adaptation={"epochs": 3, "distill_weight": weight, "early_stopping_patience": None,
                                  "checkpoint_every": 1}, **kw)


def test_stage2_distillation_term_keeps_the_fused_ranking_and_resumes_identically(tmp_path, cache_dir, adi):
    from era_hf.cache import EmbeddingCache
    from era_hf.task_embeddings import EncoderPair
    from era_hf.training import TrainingStopped
    from era_hf.training.alignment import distillation_batch_loss
    from era_hf.training.data import Embedder, build_distillation_data, prepare_tasks

    _, plain = run([adi], stage2_distill_args(tmp_path / "plain", cache_dir, 0.0))
    args = stage2_distill_args(tmp_path / "full", cache_dir, 5.0)
    _, kept = run([adi], args)
    embedder = Embedder(EncoderPair(MPNET, MINILM, cache=EmbeddingCache(cache_dir)))
    groups = build_distillation_data(prepare_tasks([adi], args), embedder, args)
    big = dataclasses.replace(args.alignment, distill_batch_size=10_000)  # every query of the task at once

    def kl(model):
        with torch.no_grad():
            return float(distillation_batch_loss(model.head, groups, big, torch.Generator().manual_seed(0)))

    assert kl(kept) < kl(plain)  # the labels moved both heads; the term held this one closer to the teacher
    out = tmp_path / "resumed"
    with pytest.raises(TrainingStopped):
        run([adi], stage2_distill_args(out, cache_dir, 5.0, stop_after="adaptation:1"))
    run([adi], stage2_distill_args(out, cache_dir, 5.0, resume=True))
    first, second = head_tensors(tmp_path / "full"), head_tensors(out)
    # its batches are re-drawn per epoch on resume
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_result_hashes_hold_the_distillation_settings_when_stage2_distils():
    from era_hf.benchmark import _hash_arguments

    plain = get_recipe("recommended").arguments(tasks=["x"], output_dir="out", alignment={"distill_steps": 0})
    assert "adaptation.distill_weight" not in _hash_arguments(plain, True)  # older results keep their hash
    term = get_recipe("recommended").arguments(tasks=["x"], output_dir="out", alignment={"distill_steps": 0},
                                               adaptation={"distill_weight": 2.0})
    flat = _hash_arguments(term, True)
    assert flat["adaptation.distill_weight"] == 2.0 and flat["alignment.distill_temperature"] == 0.05


@pytest.mark.parametrize("recipe, adaptation, message", [
    ("reference", {"distill_weight": 1.0}, "distill_weight distils .* needs --anchor"),
    ("recommended", {"distill_weight": -1.0}, "distill_weight must be a number >= 0"),
])
def test_bad_stage2_distillation_settings_are_refused_by_name(recipe, adaptation, message):
    args = get_recipe(recipe).arguments(tasks=["x"], output_dir="out", adaptation=adaptation)
    with pytest.raises(ERAError, match=message):
        args.validate()


def test_lexical_teacher_is_each_query_texts_bm25_over_the_ranked_documents(tmp_path, cache_dir):
    from era_hf.cache import EmbeddingCache
    from era_hf.lexical import BM25, standardized
    from era_hf.task_embeddings import EncoderPair
    from era_hf.tasks import load_task
    from era_hf.training.data import Embedder, build_distillation_data, non_test_query_ids, prepare_tasks

    task = load_task(str(write_beir(tmp_path / "synth", n_docs=30, n_queries=12, name="synth")))
    embedder = Embedder(EncoderPair(MPNET, MINILM, cache=EmbeddingCache(cache_dir)))
    sizes = {"distill_docs_per_task": 10, "distill_pseudo_queries": 4}
    off = distill_args(tmp_path / "off", cache_dir, distill_lexical_weight=0.0, **sizes)
    assert build_distillation_data(prepare_tasks([task], off), embedder, off)[0].lexical is None
    args = distill_args(tmp_path / "on", cache_dir, distill_lexical_weight=1.0, **sizes)
    infos = prepare_tasks([task], args)
    (group,) = build_distillation_data(infos, embedder, args)
    # the ranked documents' corpus rows, found by their index embeddings
    corpus = torch.from_numpy(np.array(embedder.corpus(task)))
    rows = [int((corpus - d).abs().sum(1).argmin()) for d in group.docs]
    texts = [task.document_texts()[r] for r in rows]
    queries = [texts[i] for i in group.own_doc[:4]] + task.query_texts(non_test_query_ids(infos[0], args))
    own = torch.zeros(group.n_queries, 10, dtype=torch.bool)
    own[torch.arange(4), group.own_doc[:4]] = True
    assert group.lexical.shape == (group.n_queries, 10)
    assert torch.allclose(group.lexical, standardized(BM25(texts).scores(queries), own), atol=1e-6)


def test_a_heavy_lexical_teacher_pulls_the_head_toward_bm25s_ranking(tmp_path, cache_dir, adi):
    from era_hf.cache import EmbeddingCache
    from era_hf.lexical import BM25
    from era_hf.model_card import build_model_card
    from era_hf.task_embeddings import EncoderPair

    qids = adi.judged_query_ids()
    pair = EncoderPair(MPNET, MINILM, cache=EmbeddingCache(cache_dir))
    docs, x, anchor = (np.array(e) for e in (pair.corpus(adi), pair.queries(adi, qids, "query"),
                                              pair.queries(adi, qids, "document")))
    bm25_top = BM25(adi.document_texts()).scores(adi.query_texts(qids)).topk(3, dim=1).indices

    def agreement(lexical_weight: float) -> float:
        out = tmp_path / f"lex{lexical_weight}"
        # 40 steps at 1e-3 (the recipe takes 300 at 3e-4) move the head far enough to see the pull
        trainer, model = run([adi], distill_args(out, cache_dir, distill_steps=40, distill_lr=1e-3,
                                                 distill_lexical_weight=lexical_weight))
        assert trainer.log["stages"]["alignment"]["init"]["distillation"]["lexical_weight"] == lexical_weight
        card = build_model_card(out).text
        said = "fused scores and BM25 (teacher weight 1, lexical weight 20, 40 steps" in card
        assert said == bool(lexical_weight), card
        with torch.inference_mode():
            top = torch.from_numpy(np.asarray(model.adapt(x, anchor)) @ docs.T).topk(3, dim=1).indices
        return float(np.mean([len(set(a.tolist()) & set(b.tolist())) for a, b in zip(top, bm25_top)]))

    heavy, none = agreement(20.0), agreement(0.0)
    assert heavy > none + 0.3  # of 3: more of BM25's top documents in the head's top 3


@pytest.mark.parametrize("head_type,kwargs", [("linear", {}), ("mlp", {"hidden_dim": 32}),
                                              ("low_rank_residual", {"rank": 4}),
                                              ("low_rank_residual", {"rank": 4, "learn_w0": True})])
def test_score_map_is_written_into_the_linear_part_of_every_head(head_type, kwargs):
    from era_hf.heads import build_head
    from era_hf.training.alignment import set_linear_part

    head = build_head(head_type, 12, 6, **kwargs)
    for p in head.parameters():  # a head that has trained: the nonlinear part is on before the write
        torch.nn.init.normal_(p)
    w = torch.randn(12, 6, generator=torch.Generator().manual_seed(0))
    set_linear_part(head, w)
    x = torch.randn(5, 12)
    assert torch.allclose(head.project(x), x @ w, atol=1e-5)


@pytest.mark.parametrize("head_type", ["mlp", "low_rank_residual"])
def test_recommended_recipe_distils_other_heads_and_they_reload_identically(tmp_path, cache_dir, adi, head_type):
    trainer, model = run([adi], distill_args(tmp_path / "a", cache_dir, distill_steps=40, head=head_type))
    record = trainer.log["stages"]["alignment"]["init"]["distillation"]
    assert model.config.head_type == head_type and model.config.init == "score+distill"
    assert record["loss_last_tenth"] < 0.8 * record["loss_first_tenth"]
    x = torch.randn(3, 768, generator=torch.Generator().manual_seed(1))
    anchor = torch.nn.functional.normalize(torch.randn(3, 384, generator=torch.Generator().manual_seed(2)), dim=-1)
    reloaded = load_head_only(tmp_path / "a")
    with torch.no_grad():
        assert torch.allclose(model.head(x, anchor), reloaded.head(x, anchor), atol=1e-6)
