"""Shared test set-up: offline Hub, quiet tokenizers, small shared models."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MPNET = "sentence-transformers/all-mpnet-base-v2"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REPO_ROOT = Path(__file__).resolve().parents[1]


def offline_env(root: Path) -> dict[str, str]:
    """This environment with every HF_* setting replaced: offline, every Hugging Face cache (hub, datasets,
    evaluate, modules) an empty folder under ``root``, and this clone first on PYTHONPATH. For a fresh process:
    the libraries read these variables when they are imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_EVALUATE_OFFLINE="1",
        HF_HOME=str(root / "home"),
        HF_HUB_CACHE=str(root / "hub"),
        HF_DATASETS_CACHE=str(root / "datasets"),
        HF_EVALUATE_CACHE=str(root / "evaluate"),
        HF_MODULES_CACHE=str(root / "modules"),
        XDG_CACHE_HOME=str(root / "xdg"),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
    )
    return env


def numpy_ndcg_per_query(pair, task, query_ids, side: str) -> dict[str, float]:
    """A zero-shot baseline's nDCG@10 per query (``side``'s encoder on both sides), ranked with plain numpy: the
    benchmark scripts' values are checked against it."""
    import numpy as np

    from era_hf.metrics import retrieval_metrics

    scores = pair.queries(task, query_ids, side=side) @ pair.corpus(task, side=side).T
    ids = task.document_ids()
    ranked = [[ids[i] for i in np.argsort(-row, kind="stable")[:100]] for row in scores]
    return dict(zip(query_ids, retrieval_metrics(list(query_ids), ranked, task.qrels)["ndcg@10"]))


def load_benchmark_script(name: str):
    """The module ``benchmarks/<name>.py`` (scripts, not a package: loaded from their file)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def default_model():
    """The default pair (MPNet → MiniLM), untrained linear head; loaded once per session."""
    import torch

    from era_hf import ERAModel

    torch.manual_seed(0)
    return ERAModel.from_encoders(MPNET, MINILM)


@pytest.fixture(scope="session")
def minilm_encoder():
    from era_hf.encoders import DocumentEncoder

    return DocumentEncoder.from_pretrained(MINILM)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small CPU tensors run faster (and identically across runs) on one thread on a shared 2-core box."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
