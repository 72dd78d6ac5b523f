"""The Python API's promise: a caller's mistake is an ERAError naming the argument, never a deep traceback from
torch, transformers or numpy, and never a silently wrong result."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import MINILM
from test_training import write_beir

from era_hf import ERAError


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
    from era_hf.tasks import load_task

    return load_task(str(write_beir(tmp_path_factory.mktemp("tiny") / "task", n_docs=20, n_queries=10, name="task")))


def _encoder_with_max_length(encoder, max_length):
    from era_hf.encoders import DocumentEncoder

    return DocumentEncoder(encoder.model, encoder.tokenizer, encoder.model_id, encoder.revision, encoder.pooling,
                           max_length=max_length)


def _from_pretrained(path):
    from era_hf import ERAModel

    return ERAModel.from_pretrained(path)


def _from_encoders(**kw):
    from era_hf import ERAModel

    return ERAModel.from_encoders(MINILM, MINILM, **kw)


def _evaluate(task, method="doc", **kw):
    from era_hf.evaluation import evaluate_suite

    return evaluate_suite(method, [task], **kw)


def _check_repo_id(repo_id):
    from era_hf.hub import _check_repo_id

    return _check_repo_id(repo_id)


def _training_arguments_raw(**kw):
    from era_hf.training import TrainingArguments

    TrainingArguments(output_dir="out", **kw).validate()


def _training_arguments(**kw):
    from era_hf.training import get_recipe

    get_recipe("recommended").arguments(tasks=["task"], output_dir="out", **kw).validate()


CASES = {
    "queries as a dict": (lambda m, e, t: m.encode_queries({"q1": "text"}), "not a dict"),
    "instruction of another type": (lambda m, e, t: m.encode_queries(["a"], instruction=5), "instruction must be"),
    "an unpaired surrogate": (lambda m, e, t: m.encode_queries(["bad \ud800 text"]), "unpaired surrogate"),
    "NaN embeddings": (lambda m, e, t: m.adapt(np.full((1, 768), np.nan, dtype=np.float32)), "NaN or infinite"),
    "None as embeddings": (lambda m, e, t: m.adapt(None), "must be a float array of shape (n, 768)"),
    "a template with an unknown field": (lambda m, e, t: _from_encoders(query_format="{query} {foo}"),
                                         "is not a valid template"),
    "a query format that is not a string": (lambda m, e, t: _from_encoders(query_format=None),
                                            "query_format must be a string"),
    "lora that is not a dict": (lambda m, e, t: _from_encoders(lora="yes"), "lora must be True or a dict"),
    "lora settings peft refuses": (lambda m, e, t: _from_encoders(lora={"r": 0}), "bad lora settings {'r': 0}"),
    "a negative head size": (lambda m, e, t: _from_encoders(head="mlp", hidden_dim=-5), "hidden_dim must be"),
    "tasks that are not specs": (lambda m, e, t: _training_arguments_raw(tasks=[None]), "tasks must be a list"),
    "a repo id git would refuse": (lambda m, e, t: _check_repo_id("org/name.git"),
                                   "--repo-id must look like"),
    "max_length 0": (lambda m, e, t: _encoder_with_max_length(e, 0).encode(["x"]), "max_length must be"),
    "max_length over the model's limit": (lambda m, e, t: _encoder_with_max_length(e, 100_000).encode(["x"]),
                                          "at most 512"),
    "a ranking depth below the metrics' cut-off": (lambda m, e, t: _evaluate(t, k=5), "must be an integer >= 100"),
    "a baseline name in the wrong case": (lambda m, e, t: _evaluate(t, "Doc"), "unknown baseline 'Doc'"),
    "ks as one number": (lambda m, e, t: _evaluate(t, ks=10), "ks must be a non-empty list"),
    "a model directory that does not exist": (lambda m, e, t: _from_pretrained(
        "/nonexistent/era-model"), "ERA model directory '/nonexistent/era-model' does not exist"),
    "an empty save directory": (lambda m, e, t: m.save_pretrained(""), "save_directory is empty"),
    "negative score-map weights": (lambda m, e, t: _training_arguments(
        alignment={"distill_steps": 0, "score_weights": (-1.0,)}), "alignment.score_weights must be"),
    "shrink scales as one number": (lambda m, e, t: _training_arguments(adaptation={"shrink_scales": 1.0}),
                                    "adaptation.shrink_scales must be"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_caller_mistake_is_an_era_error(case, default_model, minilm_encoder, tiny_task):
    call, message = CASES[case]
    with pytest.raises(ERAError) as raised:
        call(default_model, minilm_encoder, tiny_task)
    assert message in str(raised.value)


def test_an_index_saved_to_an_empty_path_is_refused(minilm_encoder, tmp_path, monkeypatch):
    from era_hf.index import DocumentIndex

    monkeypatch.chdir(tmp_path)
    index = DocumentIndex.build(minilm_encoder, ["d1", "d2"], ["one text", "another text"])
    with pytest.raises(ERAError, match="index directory is empty"):
        index.save("")
    assert list(tmp_path.iterdir()) == []  # nothing landed in the working directory


def test_head_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    """transformers would leave missing head weights uninitialised (NaN embeddings) and only print a report."""
    import torch
    from safetensors.torch import save_file

    from era_hf import ERAConfig, ERAModel

    model = ERAModel(ERAConfig(query_encoder=MINILM, document_encoder=MINILM, query_dim=384, document_dim=384))
    model.save_pretrained(tmp_path / "m")
    save_file({"other": torch.zeros(2)}, tmp_path / "m" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ERAError, match=r"lacks head weights head\.proj\.bias, head\.proj\.weight"):
        ERAModel.from_pretrained(tmp_path / "m")
    model.save_pretrained(tmp_path / "dims")
    config = json.loads((tmp_path / "dims" / "config.json").read_text())
    (tmp_path / "dims" / "config.json").write_text(json.dumps({**config, "query_dim": 768}))
    with pytest.raises(ERAError, match="the head weights do not match config.json"):
        ERAModel.from_pretrained(tmp_path / "dims")


def test_numpy_scalars_are_plain_numbers_to_the_arguments():
    from era_hf.training import get_recipe

    args = get_recipe("reference").arguments(tasks=["task"], output_dir="out", seed=np.int64(3),
                                             label_ratio=np.float32(0.25))
    args.validate()
    assert type(args.seed) is int and args.seed == 3 and type(args.label_ratio) is float


def test_evaluate_suite_takes_one_task_specs_or_objects_and_refuses_the_rest(tiny_task):
    from era_hf.evaluation import evaluate_suite

    one = evaluate_suite("doc", tiny_task)
    assert list(one["tasks"]) == [tiny_task.name]
    assert evaluate_suite("doc", [tiny_task])["macro"] == one["macro"]
    with pytest.raises(ERAError, match="tasks must be RetrievalTask objects or task specs"):
        evaluate_suite("doc", [None])
    with pytest.raises(ERAError, match=f"duplicate task name {tiny_task.name!r}: from a task object and a task"):
        evaluate_suite("doc", [tiny_task, tiny_task])


def test_a_config_that_does_not_match_its_query_encoder_is_named(tiny_task):
    from era_hf import ERAConfig, ERAModel
    from era_hf.evaluation import evaluate_suite

    mpnet = "sentence-transformers/all-mpnet-base-v2"  # 768-d, while the config says 384
    model = ERAModel(ERAConfig(query_encoder=mpnet, document_encoder=MINILM, query_dim=384, document_dim=384))
    with pytest.raises(ERAError, match="config.json says query_dim 384, but its query encoder .* gives 768-d"):
        evaluate_suite(model, tiny_task)
