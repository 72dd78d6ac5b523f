"""sentence-transformers export: encode_query == ERAModel.encode_queries, encode_document == DocumentEncoder,
before and after save → load (also where era_hf cannot be imported), for plain, anchored and LoRA models."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

pytest.importorskip("sentence_transformers")

from sentence_transformers import SentenceTransformer

from era_hf import ERAError, ERAModel
from era_hf.sentence_transformers_export import (
    export_sentence_transformers,
    query_prompt,
    to_sentence_transformers,
)
from tests.conftest import MINILM

pytestmark = pytest.mark.timeout(240)

QUERIES = ["how do wings produce lift?", "heparin", "boundary layer transition at hypersonic speeds " * 3]
DOCS = ["Lift on a wing comes from the pressure difference between its surfaces.",
        "Heparin prevents blood clots by activating antithrombin.", ""]
INSTRUCTION = "Retrieve the abstract that answers the question."


def _perturbed(**kwargs) -> ERAModel:
    torch.manual_seed(0)
    model = ERAModel.from_encoders(MINILM, MINILM, query_format="reference", default_instruction=INSTRUCTION,
                                   **kwargs)
    with torch.no_grad():  # move anchored (zero-init) heads and LoRA B (zero-init) off their start
        for p in model.head.parameters():
            p.add_(0.02 * torch.randn_like(p))
        for name, p in model.query_encoder.named_parameters():
            if "lora_B" in name:
                p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def documents(minilm_encoder):
    return minilm_encoder.encode_documents(DOCS)


def _check(st: SentenceTransformer, model: ERAModel, documents: np.ndarray) -> None:
    np.testing.assert_allclose(st.encode_query(QUERIES), model.encode_queries(QUERIES), atol=1e-5)
    other = "Find the paper."
    np.testing.assert_allclose(st.encode_query(QUERIES, prompt=query_prompt(model.config, other)),
                               model.encode_queries(QUERIES, instruction=other), atol=1e-5)
    np.testing.assert_allclose(st.encode_document(DOCS), documents, atol=1e-5)
    assert st.get_embedding_dimension() == model.config.document_dim


def test_plain_model_in_memory_and_through_the_cli(tmp_path, documents):
    import argparse

    from era_hf import hub

    model = _perturbed()
    st = to_sentence_transformers(model)
    assert st.prompts["query"] == f"Instruct: {INSTRUCTION}\nQuery: "
    _check(st, model, documents)
    model.save_pretrained(tmp_path / "model")
    parser = argparse.ArgumentParser()
    hub.register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export-st", str(tmp_path / "model"), str(tmp_path / "st")])
    assert args.func(args) == 0
    path = tmp_path / "st"
    assert (path / "sentence_transformers_export.py").is_file() and (path / "1_ERAHead" / "model.safetensors").is_file()
    _check(SentenceTransformer(str(path), trust_remote_code=True), model, documents)
    with pytest.raises(ERAError, match="not empty"):
        args.func(args)
    model.config.query_format = "{query} [SEP] {instruction}"
    with pytest.raises(ERAError, match="text after \\{query\\}"):
        to_sentence_transformers(model)


def test_anchored_lora_model_exports_and_loads_without_era_hf(tmp_path, documents):
    """The anchored query route needs both encoders (ERAAnchoredQueryInput); LoRA is merged into the export.
    Loaded in a process where era_hf cannot be imported (the export carries its code)."""
    model = _perturbed(anchor=True, lora={"r": 4})
    path = export_sentence_transformers(model, tmp_path / "st")
    other = "Find the paper."
    np.save(tmp_path / "q.npy", model.encode_queries(QUERIES))
    np.save(tmp_path / "q_other.npy", model.encode_queries(QUERIES, instruction=other))
    np.save(tmp_path / "d.npy", documents)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["era_hf"] = None  # the export must not need era_hf
        import numpy as np
        from sentence_transformers import SentenceTransformer
        st = SentenceTransformer({str(path)!r}, trust_remote_code=True)
        assert "transformers_modules" in type(st[1]).__module__, type(st[1]).__module__
        np.testing.assert_allclose(st.encode_query({QUERIES!r}), np.load({str(tmp_path / "q.npy")!r}), atol=1e-5)
        np.testing.assert_allclose(st.encode_query({QUERIES!r}, prompt={query_prompt(model.config, other)!r}),
                                   np.load({str(tmp_path / "q_other.npy")!r}), atol=1e-5)
        np.testing.assert_allclose(st.encode_document({DOCS!r}), np.load({str(tmp_path / "d.npy")!r}), atol=1e-5)
        print("ST-OK")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": "", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=200, check=False)
    assert "ST-OK" in proc.stdout, proc.stderr[-3000:]


def test_a_hybrid_model_exports_its_dense_part_with_a_warning(documents):
    model = _perturbed()
    model.config.lexical_weight = 0.3
    with pytest.warns(UserWarning, match="searches in hybrid .*BM25 weight 0.3.* dense embeddings only"):
        st = to_sentence_transformers(model)
    _check(st, model, documents)
