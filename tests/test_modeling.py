"""ERAModel, heads, encoders and the remote-code round trip (real offline models)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from era_hf import ERAConfig, ERAError, ERAModel
from era_hf.heads import build_head
from era_hf.text_encoding import format_queries, pool
from tests.conftest import MINILM

QUERIES = ["how do wings produce lift?", "boundary layer transition at hypersonic speeds", "heparin"]

# One table over all heads (PEFT style): (head type, settings, anchored)
HEAD_TABLE = [
    ("linear", {}, False),
    ("linear", {}, True),
    ("low_rank_residual", {"rank": 4}, False),
    ("low_rank_residual", {"rank": 4, "learn_w0": True}, True),
    ("mlp", {"hidden_dim": 32}, False),
    ("mlp", {}, True),
]


@pytest.mark.parametrize("head_type,settings,anchored", HEAD_TABLE)
def test_head_table(head_type, settings, anchored):
    torch.manual_seed(0)
    head = build_head(head_type, 12, 6, **settings)
    x = torch.nn.functional.normalize(torch.randn(5, 12), dim=-1)
    anchor = torch.nn.functional.normalize(torch.randn(5, 6), dim=-1) if anchored else None
    y = head(x, anchor)
    assert y.shape == (5, 6)
    torch.testing.assert_close(y.norm(dim=-1), torch.ones(5))
    y.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


@pytest.mark.parametrize("head_type,settings,anchored", HEAD_TABLE)
def test_model_save_load_table(tmp_path, head_type, settings, anchored):
    """Every head: save → from_pretrained → identical outputs; only head weights are saved."""
    torch.manual_seed(0)
    model = ERAModel.from_encoders(MINILM, MINILM, head=head_type, anchor=anchored, **settings)
    if anchored:  # a zero-initialised anchored head IS the cheap baseline: move it off zero first
        with torch.no_grad():
            for p in model.head.parameters():
                p.add_(0.01 * torch.randn_like(p))
    before = model.encode_queries(QUERIES)
    model.save_pretrained(tmp_path)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        assert all(k.startswith("head.") for k in f.keys())
    loaded = ERAModel.from_pretrained(tmp_path)
    assert loaded.config.head_type == head_type and loaded.config.anchor == anchored
    np.testing.assert_allclose(loaded.encode_queries(QUERIES), before, atol=1e-6)


def test_zero_initialised_anchor_is_the_cheap_baseline(minilm_encoder):
    model = ERAModel.from_encoders(MINILM, MINILM, anchor=True)
    np.testing.assert_allclose(model.encode_queries(QUERIES), minilm_encoder.encode(QUERIES), atol=1e-6)


def test_default_pair_encodes_into_document_space(default_model):
    emb = default_model.encode_queries(QUERIES, instruction="Retrieve abstracts.")
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert default_model.config.query_dim == 768 and default_model.config.document_dim == 384
    assert default_model.config.query_format == "none"  # sentence-transformers models take plain queries
    assert len(default_model.config.query_encoder_revision) == 40  # the snapshot actually loaded


def test_forward_matches_encode_queries(default_model):
    tok = default_model.query_tokenizer
    enc = tok(QUERIES, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        out = default_model(enc["input_ids"], enc["attention_mask"]).numpy()
    np.testing.assert_allclose(out, default_model.encode_queries(QUERIES), atol=1e-5)


def test_length_sorted_batching_keeps_order(minilm_encoder):
    texts = ["short", "a much longer text " * 20, "medium sized text here", "x"]
    batched = minilm_encoder.encode(texts, batch_size=2)
    single = np.stack([minilm_encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_truncation_warns_once_per_call(minilm_encoder):
    with pytest.warns(UserWarning, match="truncated") as record:
        minilm_encoder.encode(["word " * 600, "short", "term " * 700, "text " * 800])
    assert len([w for w in record if "truncated" in str(w.message)]) == 1
    assert "3 of 4 texts" in str(record[0].message)


def test_bad_input_is_a_clear_error(default_model):
    assert default_model.encode_queries([]).shape == (0, 384)
    with pytest.raises(ERAError, match=r"queries\[1\] is int"):
        default_model.encode_queries(["ok", 3])
    with pytest.raises(ERAError, match="empty or whitespace"):
        default_model.encode_queries(["ok", "   "])
    with pytest.raises(ERAError, match="single string"):
        default_model.encode_queries("a query")
    with pytest.raises(ERAError, match="2 instructions for 3 queries"):
        default_model.encode_queries(QUERIES, instruction=["a", "b"])
    with pytest.raises(ERAError, match=r"shape \(n, 768\)"):
        default_model.adapt(np.zeros((2, 384), dtype=np.float32))


def test_query_formats():
    assert format_queries(["q"], "", "reference") == ["q"]  # no prefix for an empty instruction
    assert format_queries(["q"], "Find it.", "reference") == ["Instruct: Find it.\nQuery: q"]
    assert format_queries(["q"], "Find it.", "query: {query}") == ["query: q"]
    assert format_queries(["q1", "q2"], ["A", ""], "reference") == ["Instruct: A\nQuery: q1", "q2"]
    with pytest.raises(ERAError, match="template containing"):
        format_queries(["q"], None, "no placeholder")


def test_pooling_modes_with_padding():
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    right = torch.tensor([[1, 1, 0], [1, 1, 1]])
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])
    torch.testing.assert_close(pool(hidden, right, "mean")[0], hidden[0, :2].mean(0))
    torch.testing.assert_close(pool(hidden, right, "cls"), hidden[:, 0])
    torch.testing.assert_close(pool(hidden, right, "last_token"), torch.stack([hidden[0, 1], hidden[1, 2]]))
    torch.testing.assert_close(pool(hidden, left, "last_token"), hidden[:, -1])


@pytest.mark.parametrize("field,value,match", [
    ("head_type", "transformer", "unknown head_type 'transformer'"),
    ("query_pooling", "max", "unknown query_pooling 'max'"),
    ("query_dim", 0, "query_dim must be a positive integer"),
    ("query_format", "bad", "template containing"),
])
def test_config_validation(field, value, match):
    with pytest.raises(ERAError, match=match):
        ERAConfig(**{field: value})


def test_head_dim_mismatch_is_clear():
    model = ERAModel(ERAConfig(query_encoder=MINILM, document_encoder=MINILM, query_dim=768, document_dim=384))
    with pytest.raises(ERAError, match="expects 768-d input but query encoder .* gives 384-d"):
        model.attach_encoders()


def test_missing_model_offline_says_how_to_seed():
    with pytest.raises(ERAError, match="era-hf models install"):
        ERAModel.from_encoders("sentence-transformers/not-in-the-cache", MINILM)


def test_not_an_era_directory(tmp_path, default_model):
    with pytest.raises(ERAError, match="no config.json"):
        ERAModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ERAError, match="model_type 'bert'"):
        ERAModel.from_pretrained(tmp_path)
    saved = tmp_path / "era"
    default_model.save_pretrained(saved)
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ERAError, match="damaged or truncated"):
        ERAModel.from_pretrained(saved)
    weights.unlink()
    with pytest.raises(ERAError, match="no model.safetensors"):
        ERAModel.from_pretrained(saved)


def test_lora_round_trip(tmp_path):
    torch.manual_seed(0)
    model = ERAModel.from_encoders(MINILM, MINILM, lora={"r": 4})
    with torch.no_grad():  # LoRA B starts at zero: perturb it so the adapter matters
        for name, p in model.query_encoder.named_parameters():
            if "lora_B" in name:
                p.add_(0.05 * torch.randn_like(p))
    before = model.encode_queries(QUERIES)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "query_encoder_lora" / "adapter_model.safetensors").is_file()
    loaded = ERAModel.from_pretrained(tmp_path)
    np.testing.assert_allclose(loaded.encode_queries(QUERIES), before, atol=1e-5)


def test_remote_code_round_trip_without_era_hf(tmp_path, default_model):
    """save → fresh process, `import era_hf` blocked → AutoModel(trust_remote_code) → same outputs."""
    default_model.save_pretrained(tmp_path / "model")
    size = sum(f.stat().st_size for f in (tmp_path / "model").rglob("*") if f.is_file())
    assert size < 5 * 1024 * 1024, size
    np.save(tmp_path / "expected.npy", default_model.encode_queries(QUERIES))
    script = textwrap.dedent(f"""
        import sys
        sys.modules["era_hf"] = None  # era_hf cannot be imported
        import numpy as np
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        out = model.encode_queries({QUERIES!r})
        np.testing.assert_allclose(out, np.load({str(tmp_path / "expected.npy")!r}), atol=1e-5)
        print("REMOTE-OK")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert "REMOTE-OK" in proc.stdout, proc.stderr[-3000:]


def test_unknown_config_fields_warn(tmp_path):
    with pytest.warns(UserWarning, match="unknown field.*hed_type"):
        ERAConfig(hed_type="mlp")
    saved = ERAConfig(head_type="mlp")
    saved.save_pretrained(tmp_path)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a config era_hf wrote itself reloads without warnings
        assert ERAConfig.from_pretrained(tmp_path).head_type == "mlp"
        from transformers import AutoConfig

        assert AutoConfig.from_pretrained(tmp_path, trust_remote_code=True).head_type == "mlp"
