"""Shrinking a trained anchored head's correction toward the cheap baseline (adaptation.shrink_margin_se)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_training import adi, cache_dir, head_tensors, run, small_args  # noqa: F401 (fixtures)

from era_hf.errors import ERAError
from era_hf.heads import HEADS, build_head
from era_hf.training import AdaptationArguments, TrainingArguments
from era_hf.training.shrinkage import shrink_correction


@pytest.mark.parametrize("head_type", sorted(HEADS))
def test_scaling_the_projection_scales_its_output_and_zero_leaves_the_anchor(head_type):
    torch.manual_seed(0)
    head = build_head(head_type, 8, 4)
    for p in head.parameters():  # every part switched on (some start at zero)
        torch.nn.init.normal_(p)
    x, anchor = torch.randn(5, 8), torch.randn(5, 4)
    with torch.no_grad():
        before = head.project(x)
        head.scale_projection_(0.25)
        assert torch.allclose(head.project(x), 0.25 * before, atol=1e-5)
        head.scale_projection_(0.0)
        assert torch.equal(head(x, anchor), torch.nn.functional.normalize(anchor, dim=-1))


def _scored(values: dict[float, list[float]]):
    """A validation function reading the head's bias, which the test sets to 1 before scaling: the scale."""
    def val(head):
        scale = round(float(head.proj.bias.detach()[0]), 6)
        return [np.array(values[scale])]
    return val


def _head():
    head = build_head("linear", 3, 2)
    with torch.no_grad():
        head.proj.bias.fill_(1.0)
    return head


def test_best_scale_without_margin_and_ties_go_to_the_smaller():
    values = {0.0: [0.4, 0.4], 0.5: [0.6, 0.6], 1.0: [0.6, 0.6]}
    head = _head()
    record = shrink_correction(head, _scored(values), scales=(0.0, 0.5, 1.0), margin_se=0.0)
    assert record["scale"] == 0.5 and float(head.proj.bias.detach()[0]) == 0.5
    assert record["val_ndcg@10"] == {"0.0": 0.4, "0.5": 0.6, "1.0": 0.6}
    assert record["gain_over_weight_0"]["gain"] == pytest.approx(0.2)


# 50 standard errors cover scale 0 too, which is scored for the standard error but is not among the candidates
@pytest.mark.parametrize("margin_se, expected", [(0.0, 1.0), (1.0, 0.5), (50.0, 0.5)])
def test_the_margin_takes_the_smallest_scale_within_its_standard_errors(margin_se, expected):
    # scale 1 is best by 0.02 over 0.5; per-query differences to scale 0 are noisy (standard error 0.05)
    values = {0.0: [0.5, 0.5, 0.5, 0.5], 0.5: [0.6, 0.5, 0.7, 0.52], 1.0: [0.66, 0.5, 0.7, 0.54]}
    head = _head()
    record = shrink_correction(head, _scored(values), scales=(0.5, 1.0), margin_se=margin_se)
    assert record["scale"] == expected and float(head.proj.bias.detach()[0]) == expected
    if margin_se:
        assert record["margin"]["best"] == 1.0 and record["margin"]["standard_error"] > 0
        assert f"{margin_se:g} standard error(s)" in record["selected_by"]


def test_a_trained_head_is_the_unshrunk_one_times_the_picked_scale(tmp_path, cache_dir, adi):
    common = dict(recipe="recommended", alignment={"distill_steps": 20}, adaptation={"epochs": 2})
    _, plain = run([adi], small_args(tmp_path / "plain", cache_dir, **common))
    args = small_args(tmp_path / "shrunk", cache_dir, **{**common, "adaptation": {"epochs": 2,
                                                                                   "shrink_margin_se": 1.0}})
    trainer, shrunk = run([adi], args)
    record = trainer.log["stages"]["shrinkage"]
    scale = record["scale"]
    assert scale in args.adaptation.shrink_scales and set(record["val_ndcg@10"]) == {
        str(s) for s in args.adaptation.shrink_scales}
    best = record["margin"]["best"]
    floor = record["val_ndcg@10"][str(best)] - record["margin"]["standard_error"]
    assert record["val_ndcg@10"][str(scale)] >= floor
    assert all(v < floor for s, v in record["val_ndcg@10"].items() if float(s) < scale)
    saved, unshrunk = head_tensors(tmp_path / "shrunk"), head_tensors(tmp_path / "plain")
    assert set(saved) == set(unshrunk)
    for name in saved:
        assert torch.allclose(saved[name], scale * unshrunk[name], atol=1e-7), name
    assert plain.config.recipe == shrunk.config.recipe == "recommended (modified)"
    assert shrunk.config.training["recipe_overrides"]["adaptation.shrink_margin_se"]["used"] == 1.0
    from era_hf.model_card import build_model_card

    text = build_model_card(tmp_path / "shrunk").text
    assert (f"**shrinkage**: the trained correction scaled toward the cheap baseline by {scale:g}, picked on "
            "validation nDCG@10 of the scaled correction, the smallest scale within 1 standard error(s) of the best "
            f"(best scale {best:g}, standard error") in text


def test_stage_1_alone_reads_no_label_so_it_is_not_shrunk(tmp_path, cache_dir, adi):
    trainer, _ = run([adi], small_args(tmp_path / "s1", cache_dir, recipe="recommended", mode="alignment_only",
                                       alignment={"distill_steps": 20}, adaptation={"shrink_margin_se": 1.0}))
    assert "shrinkage" not in trainer.log["stages"] and "alignment" in trainer.log["stages"]


def test_shrinking_needs_an_anchor_and_valid_scales():
    with pytest.raises(ERAError, match="shrink_margin_se.*needs --anchor"):
        TrainingArguments(tasks=["x"], output_dir="out",
                          adaptation=AdaptationArguments(shrink_margin_se=1.0)).validate()
    for bad in ((), (0.5, -1.0), (float("nan"),), 1.0, ("0.5",)):
        with pytest.raises(ERAError, match="shrink_scales must be a non-empty list of numbers >= 0"):
            AdaptationArguments(shrink_scales=bad).validate()
    with pytest.raises(ERAError, match="shrink_margin_se must be a number >= 0"):
        AdaptationArguments(shrink_margin_se=-1.0).validate()


def test_cli_flags_set_and_unset_the_margin():
    import argparse

    from era_hf.train import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    ns = parser.parse_args(["--adaptation.shrink-margin-se", "1", "--adaptation.shrink-scales", "0", "0.5", "1"])
    assert getattr(ns, "adaptation.shrink_margin_se") == 1.0
    assert getattr(ns, "adaptation.shrink_scales") == [0.0, 0.5, 1.0]
    assert getattr(parser.parse_args(["--adaptation.shrink-margin-se", "none"]), "adaptation.shrink_margin_se") is None


def test_the_shrinkage_enters_result_hashes_only_where_it_acts():
    from era_hf.benchmark import _hash_arguments
    from era_hf.training import get_recipe

    def flat(**kw):
        return _hash_arguments(get_recipe("recommended").arguments(tasks=["x"], output_dir="out", **kw), True)

    assert not any(k.startswith("adaptation.shrink") for k in flat())  # off: results from before it stay valid
    on = flat(adaptation={"shrink_margin_se": 1.0})
    assert on["adaptation.shrink_margin_se"] == 1.0 and on["adaptation.shrink_scales"]
    stage1 = flat(mode="alignment_only", adaptation={"shrink_margin_se": 1.0})  # no stage 2: nothing is shrunk
    assert not any(k.startswith("adaptation.shrink") for k in stage1)
