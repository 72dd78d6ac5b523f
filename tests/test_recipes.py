"""Our recommended recipe: anchored head, score-preserving stage 1, whole-corpus negatives in stage 2."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_training import adi, cache_dir, run, small_args, write_beir  # noqa: F401 (fixtures)

from era_hf.heads import LinearHead
from era_hf.training import AlignmentArguments, get_recipe
from era_hf.training.alignment import score_preserving_init


def test_recommended_recipe_is_registered_and_differs_from_the_reference_only_by_name():
    rec, ref = get_recipe("recommended"), get_recipe("reference")
    assert "OURS" in rec.description
    args = rec.arguments(tasks=["x"], output_dir="out")
    assert args.anchor and args.alignment.anchored == "score" and args.adaptation.negatives == "corpus"
    assert ref.arguments(tasks=["x"], output_dir="out").adaptation.negatives == "topk_percpos"


def test_score_map_reproduces_the_query_encoders_scores():
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(400, 8, generator=g), dim=-1)  # "query encoder" view of texts
    a = torch.randn(8, 8, generator=g)
    y = x @ a  # "document encoder" view: an invertible map of the same texts
    data = SimpleNamespace(x_train=x[:360], y_train=y[:360], x_eval=x[360:], y_eval=y[360:])
    head = LinearHead(8, 8, zero_init=True)
    info = score_preserving_init(head, data, AlignmentArguments(anchored="score", ridge_lambda=1e-8),
                                 lambda h: [np.array([float(h.proj.weight.detach().norm())])])  # prefers the largest weight
    assert info["method"] == "score" and info["weight"] == 1.5
    q = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)
    with torch.no_grad():
        fused = head.project(q) @ y.T  # scores of the mapped queries against "indexed" documents
    target = q @ x.T  # what the query encoder itself would score
    for row_f, row_t in zip(fused, target):
        assert np.corrcoef(row_f.numpy(), row_t.numpy())[0, 1] > 0.999


def test_weight_zero_wins_ties_so_the_cheap_baseline_is_kept_when_validation_is_indifferent():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 6, generator=g)
    data = SimpleNamespace(x_train=x[:40], y_train=x[:40, :3], x_eval=x[40:], y_eval=x[40:, :3])
    head = LinearHead(6, 3, zero_init=True)
    info = score_preserving_init(head, data, AlignmentArguments(anchored="score"), lambda h: [np.array([0.5])])
    assert info["weight"] == 0.0 and float(head.proj.weight.detach().abs().sum()) == 0.0


def test_recommended_recipe_trains_and_masks_judged_documents(tmp_path, cache_dir, adi):
    synth = write_beir(tmp_path / "synth", n_docs=40, n_queries=20, name="synth")
    from era_hf.tasks import load_task

    trainer, model = run([adi, load_task(str(synth))], small_args(tmp_path / "rec", cache_dir, recipe="recommended"))
    assert model.config.anchor and model.config.init == "score+distill"
    assert model.config.recipe == "recommended (modified)"
    log = json.loads((tmp_path / "rec" / "training_log.json").read_text())
    init = log["stages"]["alignment"]["init"]
    assert init["method"] == "score+distill" and "val_ndcg@10" not in init  # distilled: no weight picked on labels
    assert init["distillation"]["steps"] == 2 * get_recipe("recommended").alignment["distill_steps"]
    assert set(init["distillation"]["tasks"]) == {"adi", "synth"}
    assert log["stages"]["adaptation"]["negatives"] == "corpus"
    data = trainer.data
    mask = data.corpus_negatives
    n_adi = len(adi.document_ids())
    for t, qid, q_row in data._query_index:
        info = data.infos[t]
        judged = {info.offset + info.doc_row[d] for d in info.task.qrels.get(qid, {})}
        allowed = set(torch.nonzero(mask[q_row]).flatten().tolist())
        assert allowed == set(range(info.offset, info.offset + info.n_docs)) - judged
    assert mask.shape[1] == n_adi + 40


def test_margin_rule_in_a_real_run_picks_no_larger_weight_than_the_best(tmp_path, cache_dir, adi):
    trainer, model = run([adi], small_args(tmp_path / "margin", cache_dir, recipe="recommended",
                                           alignment={"distill_steps": 0, "score_weight_margin_se": 1.0},
                                           adaptation={"epochs": 1}))
    init = trainer.log["stages"]["alignment"]["init"]
    margin = init["margin"]
    assert margin["margin_se"] == 1.0 and np.isfinite(margin["standard_error"]) and margin["standard_error"] >= 0
    assert init["weight"] <= margin["best"] and str(margin["best"]) in init["val_ndcg@10"]
    floor = init["val_ndcg@10"][str(margin["best"])] - margin["standard_error"]
    assert init["val_ndcg@10"][str(init["weight"])] >= floor
    assert all(v < floor for w, v in init["val_ndcg@10"].items() if float(w) < init["weight"])  # the smallest
    assert "1 standard error(s) of the best" in init["selected_by"]
    if init["weight"]:  # the picked weight against the cheap baseline, with its noise
        gain = init["gain_over_weight_0"]
        assert gain["gain"] == pytest.approx(init["val_ndcg@10"][str(init["weight"])] - init["val_ndcg@10"]["0.0"])
        assert gain["standard_error"] >= 0
    else:
        assert "gain_over_weight_0" not in init  # nothing to be sure of: the cheap baseline itself
    assert model.config.recipe == "recommended (modified)"


def test_corpus_negatives_reject_options_that_do_not_apply():
    from era_hf.errors import ERAError
    from era_hf.training import AdaptationArguments

    with pytest.raises(ERAError, match="corpus"):
        AdaptationArguments(negatives="corpus", resample_negatives=True).validate()


@pytest.mark.parametrize("keep_start", [True, False])
def test_keep_start_lets_the_starting_head_win_early_stopping(keep_start):
    from accelerate import Accelerator

    from era_hf.training.loop import EpochLoop, LoopState

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(8, 3)
    calls = []

    def evaluate():  # validation gets worse with every epoch of training
        calls.append(1)
        return {"val_ndcg@10": 1.0 / len(calls)}

    acc = Accelerator(cpu=True)
    loop = EpochLoop(stage="adaptation", accelerator=acc, model=model,
                     optimizer=torch.optim.SGD(model.parameters(), lr=0.5), scheduler=None, n_train=8, batch_size=4,
                     epochs=4, seed=0, loss_fn=lambda m, shard, batch: m(x[shard]).pow(2).sum(-1) + 1.0,
                     evaluate=evaluate, monitor="val_ndcg@10", higher_is_better=True, patience=2,
                     show_progress=False, log_epochs=False, keep_start=keep_start)
    state = loop.run(LoopState())
    assert state.stopped_early and state.best_epoch == (0 if keep_start else 1)
    same = all(torch.equal(start[k], v) for k, v in model.state_dict().items())
    assert same == keep_start


def test_score_weight_is_picked_on_train_and_validation_queries_only_when_labels_are_used(tmp_path, cache_dir, adi):
    logs = {}
    for mode, queries in (("both", "train_val"), ("both", "val"), ("alignment_only", "train_val")):
        out = tmp_path / f"{mode}-{queries}"
        run([adi], small_args(out, cache_dir, recipe="recommended", mode=mode,
                              alignment={"distill_steps": 0, "score_weight_queries": queries},
                              adaptation={"epochs": 1}))
        logs[mode, queries] = json.loads((out / "training_log.json").read_text())["stages"]["alignment"]["init"]
    assert logs["both", "train_val"]["selected_by"] == "train + validation nDCG@10"
    assert logs["both", "val"]["selected_by"] == logs["alignment_only", "train_val"]["selected_by"] == \
        "validation nDCG@10"
    # without labels the train queries are not used: the same validation scores as 'val'
    assert logs["alignment_only", "train_val"]["val_ndcg@10"] == logs["both", "val"]["val_ndcg@10"]
    assert logs["both", "train_val"]["val_ndcg@10"] != logs["both", "val"]["val_ndcg@10"]


def test_alignment_tasks_lend_only_their_documents_to_stage_1(tmp_path, cache_dir, adi):
    from era_hf.errors import ERAError
    from era_hf.tasks import load_task
    from era_hf.training import ERATrainer

    synth = load_task(str(write_beir(tmp_path / "synth", n_docs=40, n_queries=20, name="synth")))
    out = tmp_path / "indexed"
    args = small_args(out, cache_dir, recipe="recommended", adaptation={"epochs": 1})
    trainer = ERATrainer(None, [adi], args, alignment_tasks=[synth])
    model = trainer.train()
    stage1 = trainer.log["stages"]["alignment"]
    assert stage1["counts"] == {"synth": {"documents": 40, "queries": 0}}  # adi's documents are not aligned on
    assert [t["name"] for t in trainer.log["tasks"]] == ["adi"]  # labels: adi's only
    assert model.config.training["alignment_tasks"] == ["synth"]
    plain = ERATrainer(None, [adi], small_args(tmp_path / "plain", cache_dir, recipe="recommended",
                                               adaptation={"epochs": 1}))
    plain.train()
    assert plain.log["stages"]["alignment"]["counts"] == {"adi": {"documents": 82, "queries": 0}}
    with pytest.raises(ERAError, match="include_queries"):
        ERATrainer(None, [adi], small_args(tmp_path / "x", cache_dir, alignment={"include_queries": True}),
                   alignment_tasks=[synth])
    with pytest.raises(ERAError, match="other settings.*alignment_tasks"):  # resuming with other alignment tasks
        ERATrainer(None, [adi], small_args(out, cache_dir, recipe="recommended", adaptation={"epochs": 1},
                                           resume=True)).train()


def test_query_clarity_measures_how_far_the_top_stands_out_and_ignores_a_querys_scale():
    from era_hf.training.alignment import query_clarity

    g = torch.Generator().manual_seed(2)
    docs = torch.nn.functional.normalize(torch.randn(200, 16, generator=g), dim=-1)
    on_a_doc = docs[:3] + 0.01 * torch.randn(3, 16, generator=g)  # each query sits on one document
    vague = torch.nn.functional.normalize(torch.randn(3, 16, generator=g), dim=-1)
    assert query_clarity(on_a_doc, docs, k=1) > query_clarity(vague, docs, k=1) + 1.0
    assert query_clarity(5.0 * on_a_doc, docs) == pytest.approx(query_clarity(on_a_doc, docs), rel=1e-5)
    flat = torch.ones(1, 2)
    assert query_clarity(flat, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), k=1) == 0.0  # all scores equal


@pytest.mark.parametrize("guard_prefers, expected", [("larger", 1.5), ("smaller", 0.0)])
def test_clarity_guard_removes_weights_before_validation_picks(guard_prefers, expected):
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(100, 6, generator=g), dim=-1)
    data = SimpleNamespace(x_train=x[:90], y_train=x[:90, :4], x_eval=x[90:], y_eval=x[90:, :4])
    head = LinearHead(6, 4, zero_init=True)
    size = lambda h: float(h.proj.weight.detach().norm())  # noqa: E731
    guard = size if guard_prefers == "larger" else (lambda h: -size(h))
    info = score_preserving_init(head, data, AlignmentArguments(anchored="score"), lambda h: [np.array([size(h)])],
                                 guard=guard)
    assert info["weight"] == expected  # validation alone would always take the largest weight
    assert set(info["guard"]["clarity"]) == {"0.0", "0.25", "0.5", "0.75", "1.0", "1.5"}
    assert info["guard"]["kept"] == (["0.0"] if expected == 0.0 else ["0.0", "0.25", "0.5", "0.75", "1.0", "1.5"])
    assert list(info["val_ndcg@10"]) == info["guard"]["kept"]  # rejected weights are never validated


def test_clarity_guard_reads_the_searched_tasks_non_test_queries(tmp_path, cache_dir, adi):
    from era_hf.tasks import load_task
    from era_hf.training import ERATrainer
    from era_hf.training.data import non_test_query_ids, prepare_tasks

    synth = load_task(str(write_beir(tmp_path / "synth", n_docs=40, n_queries=20, name="synth")))
    args = small_args(tmp_path / "guarded", cache_dir, recipe="recommended", alignment={"distill_steps": 0},
                      adaptation={"epochs": 1})
    assert args.alignment.score_weight_guard == "auto"  # on: the labels (adi) are not the searched index's
    [lent] = prepare_tasks([synth], args, labels=False)  # documents only: no split of its own
    unseen = set(synth.split(args.label_ratio, args.split_seed).test)
    ids = non_test_query_ids(lent, args)
    assert unseen and not unseen & set(ids) and set(ids) | unseen == set(synth.query_ids())
    trainer = ERATrainer(None, [adi], args, alignment_tasks=[synth])
    trainer.train()
    init = trainer.log["stages"]["alignment"]["init"]
    assert init["method"] == "score"  # the weight picked on another index than the labels': under the guard
    assert set(init["guard"]["clarity"]) >= {"0.0", "1.5"} and str(init["weight"]) in init["guard"]["kept"]
    assert set(init["val_ndcg@10"]) == set(init["guard"]["kept"])
    plain = ERATrainer(None, [adi], small_args(tmp_path / "plain", cache_dir, recipe="recommended",
                                               adaptation={"epochs": 1}))
    plain.train()
    plain_init = plain.log["stages"]["alignment"]["init"]
    assert "guard" not in plain_init and plain_init["method"] == "score+distill"  # the labels are the index's


def _margin_case(gain: float, noise: float, margin_se: float) -> dict:
    """The score map with a validation whose per-query nDCG@10 rises by ``gain`` per unit of weight, with
    per-query noise of size ``noise`` (40 queries in one task)."""
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(100, 6, generator=g), dim=-1)
    data = SimpleNamespace(x_train=x[:90], y_train=x[:90, :4], x_eval=x[90:], y_eval=x[90:, :4])
    head = LinearHead(6, 4, zero_init=True)
    jitter = np.random.default_rng(0).standard_normal(40)
    jitter -= jitter.mean()  # the mean gain is exactly ``gain`` per unit: the best weight is the largest

    def val(h: torch.nn.Module) -> list[np.ndarray]:
        w = float(h.proj.weight.detach().norm())  # grows with the weight (0 at w = 0)
        return [0.5 + gain * w + noise * w * jitter]

    return score_preserving_init(head, data, AlignmentArguments(anchored="score", score_weight_margin_se=margin_se),
                                 val)


def test_paired_standard_error_matches_the_stratified_formula():
    from era_hf.training.alignment import paired_standard_error

    a = [np.array([0.5, 0.7, 0.9]), np.array([1.0])]
    b = [np.array([0.5, 0.5, 0.5]), np.array([0.5])]
    d = np.array([0.0, 0.2, 0.4])
    expected = np.sqrt(d.var(ddof=1) / 3 + 0.5 ** 2 / 1) / 2  # two strata, each weighs 1/2
    assert paired_standard_error(a, b) == pytest.approx(expected)
    assert paired_standard_error([np.array([0.3, 0.3])], [np.array([0.3, 0.3])]) == 0.0


@pytest.mark.parametrize("gain, noise, margin_se, expected", [
    (0.01, 0.0, 0.0, 1.5),   # no margin: the best weight, however small its gain
    (0.01, 0.0, 1.0, 1.5),   # a noiseless gain is beyond any number of standard errors
    (0.01, 0.5, 1.0, 0.0),   # a gain far inside the noise: the cheap baseline stays
    (0.01, 0.5, 0.0, 1.5),
])
def test_margin_rule_keeps_the_cheap_baseline_unless_the_gain_beats_the_noise(gain, noise, margin_se, expected):
    info = _margin_case(gain, noise, margin_se)
    assert info["weight"] == expected
    assert ("gain_over_weight_0" in info) == (expected > 0)
    if expected:
        assert info["gain_over_weight_0"]["gain"] > 0
        assert (info["gain_over_weight_0"]["standard_error"] > 0) == (noise > 0)
    assert ("margin" in info) == (margin_se > 0)
    if margin_se:
        assert info["margin"]["best"] == 1.5 and "standard error" in info["selected_by"]
        assert (info["margin"]["standard_error"] > 0) == (noise > 0)


def test_the_guard_enters_result_hashes_only_where_it_acts():
    from era_hf.benchmark import _hash_arguments

    rec = get_recipe("recommended").arguments(tasks=["x"], output_dir="out")
    assert "alignment.score_weight_guard" not in _hash_arguments(rec, True)  # results from before it stay valid
    assert "alignment.score_weight_guard" not in _hash_arguments(rec, True, has_alignment_tasks=True)  # distils
    picked = get_recipe("recommended").arguments(tasks=["x"], output_dir="out", alignment={"distill_steps": 0})
    assert _hash_arguments(picked, True, has_alignment_tasks=True)["alignment.score_weight_guard"] == "clarity"
    ref = get_recipe("reference").arguments(tasks=["x"], output_dir="out")  # no score map: nothing to guard
    assert "alignment.score_weight_guard" not in _hash_arguments(ref, True, has_alignment_tasks=True)
    assert "alignment.score_weight_margin_se" not in _hash_arguments(rec, True)  # 0 = as before the field
    margin = get_recipe("recommended").arguments(tasks=["x"], output_dir="out",
                                                 alignment={"score_weight_margin_se": 1.0})
    assert _hash_arguments(margin, True)["alignment.score_weight_margin_se"] == 1.0


def test_clarity_guard_without_readable_queries_warns_under_auto_and_refuses_when_forced(tmp_path, cache_dir, adi):
    from era_hf.errors import ERAError
    from era_hf.tasks import load_task
    from era_hf.training import ERATrainer

    tiny = load_task(str(write_beir(tmp_path / "tiny", n_docs=30, n_queries=2, name="tiny")))  # too few to split
    auto = ERATrainer(None, [adi], small_args(tmp_path / "auto", cache_dir, recipe="recommended",
                                              alignment={"distill_steps": 0}, adaptation={"epochs": 1}),
                      alignment_tasks=[tiny])
    with pytest.warns(UserWarning, match="without the guard"):
        auto.train()
    assert "guard" not in auto.log["stages"]["alignment"]["init"]
    forced = ERATrainer(None, [adi], small_args(tmp_path / "forced", cache_dir, recipe="recommended",
                                                alignment={"distill_steps": 0, "score_weight_guard": "clarity"},
                                                adaptation={"epochs": 1}), alignment_tasks=[tiny])
    with pytest.raises(ERAError, match="score_weight_guard reads the query texts"):
        forced.train()
