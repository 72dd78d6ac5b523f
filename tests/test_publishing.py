"""Publishing: model cards, `era-hf push` / `push-index` / `card`, against tests/hub_server.py with the
REAL huggingface_hub and transformers clients (no mocks).

Hub clients run in subprocesses (``run_client``): ``HF_ENDPOINT`` is read when huggingface_hub is
imported. The base encoder (all-MiniLM-L6-v2) is uploaded to the test server under its real id from the
seeded local cache, so the pushed model loads its encoder by id from "the Hub" like it would for a user.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from era_hf import ERAError, ERAModel
from tests.conftest import MINILM, REPO_ROOT

try:
    from tests.hub_server import (DEFAULT_TOKEN, DEFAULT_USER, HubServer, client_env, hub_server,  # noqa: F401
                                  run_client)
except ImportError:  # tests/ itself on sys.path
    from hub_server import DEFAULT_TOKEN, DEFAULT_USER, HubServer, client_env, hub_server, run_client  # noqa: F401

pytestmark = pytest.mark.timeout(240)

QUERIES = ["how do wings produce lift?", "heparin and blood clots", "hypersonic boundary layer"]
DOCS = ["Lift on a wing comes from the pressure difference between its surfaces.",
        "Heparin prevents blood clots by activating antithrombin.",
        "Boundary layers become turbulent above a critical Reynolds number.",
        "The library catalogue lists documents by subject headings."]
TASKS = {"adi": "information science", "cisi": "information science"}
WRONG_TOKEN = "hf_wrongTOKENsecret0123456789"
#: Valid read-only tokens: whoami passes, the first write answers 403 (echoed back by a leaky server).
READ_TOKEN = "hf_readONLYsecret0123456789"
ORG_TOKEN = "api_org_readONLYsecret42"  # the older org-token shape: not caught by the hf_... pattern


# ------------------------------------------------------------------------------------ fixtures
def tiny_png() -> bytes:
    """A valid 1x1 PNG (the loss plot stand-in)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


def eval_json(model_dir: Path, era_ndcg: float = 0.61, doc_ndcg: float = 0.48, query_ndcg: float = 0.66,
              baseline_test_ids: list[str] | None = None) -> dict:
    """An evaluation file in the layout `era-hf evaluate --output` writes (ERA run + both baselines)."""
    head_sha = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    encoders = {side: {"model_id": MINILM, "revision": None, "pooling": "mean", "max_length": n, "normalize": True}
                for side, n in (("query_encoder", 128), ("document_encoder", 256))}

    def run(method: dict, ndcg: float, test_ids: list[str]) -> dict:
        tasks = {}
        for i, (name, domain) in enumerate(TASKS.items()):
            metrics = {"ndcg@10": ndcg - 0.02 * i, "map@100": ndcg - 0.1, "recall@100": min(1.0, ndcg + 0.3),
                       "mrr@100": ndcg}
            tasks[name] = {"domain": domain, "source": f"/data/{name}", "revision": None, "n_documents": 80,
                           "n_queries": len(test_ids), "metrics": metrics,
                           "split": {"train": ["q1"], "val": ["q2"], "test": test_ids, "seed": 42,
                                     "label_ratio": 0.2}}
        macro = {k: float(np.mean([t["metrics"][k] for t in tasks.values()])) for k in tasks["adi"]["metrics"]}
        return {"method": method, "encoders": encoders, "label_ratio": 0.2, "seed": 42, "tasks": tasks,
                "macro": macro, "per_domain": {}}

    test_ids = ["q3", "q4", "q5"]
    return {"era_hf_version": "0.1.0", "runs": [
        run({"type": "era", "model": str(model_dir), "revision": None, "head_sha256": head_sha,
             "head_type": "linear", "anchor": False, "lora": False, "init": "random", "recipe": "reference"},
            era_ndcg, test_ids),
        run({"type": "baseline", "name": "doc"}, doc_ndcg, baseline_test_ids or test_ids),
        run({"type": "baseline", "name": "query"}, query_ndcg, test_ids),
    ]}


def training_log() -> dict:
    from era_hf.training.arguments import TrainingArguments

    args = TrainingArguments(tasks=["/data/adi", "/data/cisi"], alignment_tasks=["/data/vaswani"],
                             output_dir="/tmp/out").to_dict()
    init = {"method": "score", "weight": 0.5, "selected_by": "train + validation nDCG@10",
            "guard": {"clarity": {"0.0": 2.5, "0.5": 2.6, "1.0": 2.4}, "kept": ["0.0", "0.5"]},
            "margin": {"best": 0.5, "standard_error": 0.02, "margin_se": 1.0},
            "gain_over_weight_0": {"gain": 0.031, "standard_error": 0.012}}
    return {"arguments": args, "stages": {"alignment": {"epochs_run": 100, "final_eval_loss": 0.3125, "init": init},
                                          "adaptation": {"epochs_run": 17, "best_epoch": 12, "best_val_loss": 1.25}},
            "seconds": 42.0}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A MiniLM→MiniLM model directory with training log, loss plot and evaluation file; expected outputs;
    a document index and its expected search results."""
    from era_hf.encoders import DocumentEncoder
    from era_hf.index import DocumentIndex

    root = tmp_path_factory.mktemp("publish")
    torch.manual_seed(0)
    model = ERAModel.from_encoders(MINILM, MINILM)
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model_dir = root / "model"
    model.save_pretrained(model_dir)
    (model_dir / "training_log.json").write_text(json.dumps(training_log()))
    (model_dir / "loss_curves.png").write_bytes(tiny_png())
    (model_dir / "eval_results.json").write_text(json.dumps(eval_json(model_dir)))
    (model_dir / "checkpoint-junk.bin").write_bytes(b"not for the hub")
    expected = model.encode_queries(QUERIES)
    np.save(root / "expected.npy", expected)
    encoder = DocumentEncoder.from_pretrained(MINILM)
    index = DocumentIndex.build(encoder, [f"d{i}" for i in range(len(DOCS))], DOCS)
    index.save(root / "index")
    _, ids = index.search(expected, k=3)
    (root / "expected_ids.json").write_text(json.dumps(ids))
    from huggingface_hub import snapshot_download

    minilm = snapshot_download(MINILM, local_files_only=True)
    return {"root": root, "model_dir": model_dir, "model": model, "minilm": minilm,
            "revision": model.config.query_encoder_revision}


def _cli_parser() -> argparse.ArgumentParser:
    from era_hf import hub

    parser = argparse.ArgumentParser(prog="era-hf")
    hub.register_cli(parser.add_subparsers(dest="command", required=True))
    return parser


#: Runs `era-hf` in a subprocess even before era_hf.hub is listed in cli.COMMAND_MODULES.
CLI_SHIM = ("import sys; from era_hf import cli; "
            "cli.COMMAND_MODULES = tuple(dict.fromkeys((*cli.COMMAND_MODULES, 'era_hf.hub'))); "
            "sys.exit(cli.main(sys.argv[1:]))")


# ------------------------------------------------------------------------------------ cards (no server)
def test_model_card_metadata_and_body(published):
    from huggingface_hub import ModelCard, metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from era_hf.model_card import build_model_card, check_card

    card = build_model_card(published["model_dir"], repo_id="test-user/era-minilm")
    meta = check_card(card)
    assert meta["library_name"] == "era_hf" and meta["pipeline_tag"] == "sentence-similarity"
    assert meta["license"] == "apache-2.0" and meta["base_model"] == [MINILM]
    assert {"era", "retrieval-adapter", "sentence-transformers", "feature-extraction"} <= set(meta["tags"])
    path = published["root"] / "README.md"
    card.save(path)
    assert metadata_load(path) == card.data.to_dict() == ModelCard.load(path).data.to_dict()
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == "era-minilm"
    values = {(r.dataset_name, r.metric_type): r.metric_value for r in results}
    macro = next(r.dataset_name for r in results if r.dataset_type == "era-macro-average")
    # the model AND both baselines, per task and macro, all three metrics
    assert values[("adi", "ndcg_at_10")] == pytest.approx(0.61)
    assert values[("cisi", "ndcg_at_10_baseline_doc")] == pytest.approx(0.46)
    assert values[(macro, "ndcg_at_10")] == pytest.approx(0.60)
    assert values[(macro, "map_at_100_baseline_query")] == pytest.approx(0.56)
    assert {t for _, t in values} == {f"{m}{s}" for m in ("ndcg_at_10", "map_at_100", "recall_at_100")
                                      for s in ("", "_baseline_doc", "_baseline_query")}
    text = card.text
    assert "0.4700 with the document encoder alone → 0.6000 with this adapter (+0.1300, +27.7%)" in text  # the gain over the same cheap index, visible
    # where the query encoder on both sides is ahead (here every task: 0.66 against 0.61), the card says so
    assert ("all-MiniLM-L6-v2 → all-MiniLM-L6-v2 (corpus re-encoded, zero-shot) has a higher nDCG@10 than this "
            "adapter on adi (0.6600 against 0.6100), cisi (0.6400 against 0.5900)") in text
    assert "`Searcher(model, index, Rerank())`" in text
    ahead = published["root"] / "eval_ahead.json"  # the adapter above the query encoder everywhere: no such line
    ahead.write_text(json.dumps(eval_json(published["model_dir"], era_ndcg=0.75)))
    assert "has a higher nDCG@10 than this adapter" not in build_model_card(published["model_dir"],
                                                                             eval_results=ahead).text
    assert "Build your index with this model".lower() in text.lower() and MINILM in text
    assert 'AutoModel.from_pretrained("test-user/era-minilm", trust_remote_code=True)' in text
    assert "`adaptation.lr` | `1e-05`" in text and "`alignment.epochs` | `100`" in text
    assert "output_dir" not in text and "/tmp/out" not in text  # result-neutral settings are not hyper-parameters
    assert "![Training and validation loss](loss_curves.png)" in text
    assert ("score-map weight 0.5, picked on train + validation nDCG@10 (best weight 0.5, standard error 0.02) among "
            "the weights the clarity guard kept (0.0, 0.5); validation nDCG@10 +0.0310 ± 0.0120 (one standard error) "
            "over weight 0, the cheap baseline") in text
    assert "arXiv:2604.03403" in text and "Align then Train" in text
    assert "/data/adi" not in text and "/data/vaswani" not in text  # no local paths in the card
    assert ("Stage 1 aligned on `vaswani` (local directory) instead: documents and query texts outside the test "
            "split, no labels.") in text
    assert "InfoNCE of each positive against mined hard negatives" in text  # the default negatives


def test_card_says_which_negatives_stage_2_contrasted(published, tmp_path):
    import shutil

    from era_hf.model_card import build_model_card

    model_dir = shutil.copytree(published["model_dir"], tmp_path / "model")
    log = training_log()
    log["arguments"]["adaptation"]["negatives"] = "corpus"
    (model_dir / "training_log.json").write_text(json.dumps(log))
    text = build_model_card(model_dir).text
    assert "InfoNCE of each positive against every unjudged document of its task" in text


def test_card_refuses_inconsistent_evaluations(published, tmp_path):
    from era_hf.model_card import build_model_card

    bad = eval_json(published["model_dir"], baseline_test_ids=["q9", "q8", "q7"])
    with pytest.raises(ERAError, match="other test queries"):
        build_model_card(published["model_dir"], bad)
    stale = eval_json(published["model_dir"])
    stale["runs"][0]["method"]["head_sha256"] = "0" * 64
    with pytest.raises(ERAError, match="other head weights"):
        build_model_card(published["model_dir"], stale)
    with pytest.raises(ERAError, match="no ERA model run"):
        build_model_card(published["model_dir"], {"runs": stale["runs"][1:]})
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ERAError, match="not valid JSON"):
        build_model_card(published["model_dir"], tmp_path / "broken.json")
    with pytest.raises(ERAError, match="unknown license"):
        build_model_card(published["model_dir"], license="my-own")


def test_card_cli_and_template_lookup(published, tmp_path, monkeypatch, capsys):
    from era_hf import model_card

    assert model_card.templates_dir() == REPO_ROOT / "model_cards"
    out = tmp_path / "card.md"
    args = _cli_parser().parse_args(["card", str(published["model_dir"]), "--output", str(out),
                                     "--repo-id", "org/era-x"])
    assert args.func(args) == 0
    assert out.read_text().startswith("---\n") and "org/era-x" in out.read_text()
    # a template folder named by the environment wins (a customised card)
    custom = tmp_path / "templates"
    custom.mkdir()
    (custom / model_card.MODEL_TEMPLATE).write_text("---\n{{ card_data }}\n---\n# custom {{ era.document_encoder }}\n")
    monkeypatch.setenv(model_card.TEMPLATES_ENV, str(custom))
    card = model_card.build_model_card(published["model_dir"])
    assert card.text.strip() == f"# custom {MINILM}"


def test_push_checks_before_any_network(published, hub_server, tmp_path):
    from era_hf.hub import model_files, push_model, scrub

    files = {dest for _, dest in model_files(published["model_dir"])}
    assert files == {"config.json", "model.safetensors", "configuration_era.py", "modeling_era.py", "heads.py",
                     "errors.py", "text_encoding.py", "training_log.json", "loss_curves.png", "eval_results.json"}
    with pytest.raises(ERAError, match="NAMESPACE/NAME"):
        push_model(published["model_dir"], "no-namespace")
    with pytest.raises(ERAError, match="no config.json"):
        push_model(tmp_path, "org/x")
    assert scrub(f"401 for {WRONG_TOKEN} and hf_abcdefgh1234", WRONG_TOKEN) == "401 for *** and hf_***"

    # no token at all: no argument, no HF_TOKEN, an empty HF_HOME (no stored login) set before
    # huggingface_hub is imported -> the API raises, the CLI prints one line and exits 2, no request is made
    home = tmp_path / "empty_home"
    proc = run_client(hub_server, textwrap.dedent(f"""
        import contextlib, io, json, os
        from huggingface_hub import get_token
        assert get_token() is None and "HF_TOKEN" not in os.environ and not os.listdir({str(home)!r})
        from era_hf import ERAError, cli
        from era_hf.hub import push_model
        try:
            push_model({str(published["model_dir"])!r}, "test-user/x")
            raise SystemExit("pushed without a token")
        except ERAError as err:
            api = str(err)
        cli.COMMAND_MODULES = tuple(dict.fromkeys((*cli.COMMAND_MODULES, "era_hf.hub")))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(["push", {str(published["model_dir"])!r}, "--repo-id", "test-user/x"])
        print(json.dumps({{"api": api, "rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}}))
    """), home, token=None, timeout=120, extra_env={"PYTHONPATH": str(REPO_ROOT)})
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["api"].startswith("no Hugging Face token: pass --token, set HF_TOKEN, or log in"), result
    assert result["rc"] == 2 and result["stdout"] == "", result
    assert result["stderr"] == f"error: {result['api']}\n", result
    assert "Traceback" not in proc.stderr, proc.stderr
    assert list(hub_server.requests) == [] and not hub_server.repo_exists("test-user/x")


def test_lora_adapter_is_pushed_and_stale_files_are_managed(tmp_path):
    from era_hf.hub import MODEL_MANAGED, _managed, model_files

    torch.manual_seed(0)
    ERAModel.from_encoders(MINILM, MINILM, lora={"r": 2}).save_pretrained(tmp_path / "lora")
    files = {dest for _, dest in model_files(tmp_path / "lora")}
    assert {"query_encoder_lora/adapter_config.json", "query_encoder_lora/adapter_model.safetensors"} <= files
    (tmp_path / "lora" / "query_encoder_lora" / "adapter_config.json").unlink()
    with pytest.raises(ERAError, match="uses LoRA but"):
        model_files(tmp_path / "lora")
    managed = _managed(MODEL_MANAGED)
    assert managed("query_encoder_lora/adapter_model.safetensors") and managed("heads.py")
    assert managed("loss_curves.png") and not managed("notes.md") and not managed("extra/tool.py")


# ------------------------------------------------------------------------------------ against the server
def assert_token_not_pushed(server, token: str, repos: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Assert ``token`` is in no file (README.md cards included) and no commit title / message of any
    commit of any branch of ``repos``; returns the (repo, path) pairs checked."""
    checked = []
    for repo, kind in repos:
        branches = server.store.load_repo(kind, repo)["refs"]["heads"]
        commits = {c["id"]: c for branch in branches for c in server.commits(repo, kind, branch)}
        assert len(commits) >= 2, (repo, commits)
        for sha, commit in commits.items():
            assert token not in commit["title"] + commit["message"], (repo, commit)
            for path in server.list_files(repo, kind, revision=sha):
                assert token.encode() not in server.read_file(repo, path, kind, revision=sha), (repo, sha, path)
                checked.append((repo, path))
    return checked


def test_push_pull_round_trip(published, hub_server, tmp_path):
    """Upload the base encoder; push the model (API), re-push (CLI) in place; card metadata from the Hub;
    transformers' own push_to_hub; push-index → DocumentIndex.load(repo) → same results; then a fresh
    process without era_hf loads both pushed models by repo id with trust_remote_code → same embeddings."""
    import shutil

    # a rejected token comes back in the 401 (huggingface_hub's whoami drops that server message; the
    # scrubbing itself is exercised by test_token_echoed_by_the_server_is_scrubbed_from_every_error)
    hub_server.echo_tokens = True
    root, model_dir = published["root"], published["model_dir"]
    eval2 = root / "eval_v2.json"
    eval2.write_text(json.dumps(eval_json(model_dir, era_ndcg=0.71)))
    eval3 = root / "eval_v3.json"
    eval3.write_text(json.dumps(eval_json(model_dir, era_ndcg=0.75)))
    retrained = tmp_path / "model_v2"  # the second push has no loss plot any more: the stale file goes
    shutil.copytree(model_dir, retrained, ignore=shutil.ignore_patterns("loss_curves.png"))
    proc = run_client(hub_server, textwrap.dedent(f"""
        import io, json, contextlib
        from huggingface_hub import HfApi, ModelCard
        api = HfApi()
        # the base encoder, under its real id (its pinned revision is a branch here: the test Hub
        # cannot reproduce the real commit sha)
        api.create_repo({MINILM!r})
        api.upload_folder(folder_path={published["minilm"]!r}, repo_id={MINILM!r},
                          ignore_patterns=[".era_hf_complete", ".gitattributes", "README.md"])
        api.create_branch({MINILM!r}, branch={published["revision"]!r})

        from era_hf import ERAError, ERAModel, cli
        from era_hf.hub import push_model, push_index
        from era_hf.index import DocumentIndex
        # a rejected token creates nothing and never shows up in the error
        try:
            push_model({str(model_dir)!r}, "test-user/brand-new", token={WRONG_TOKEN!r})
            raise SystemExit("a wrong token pushed")
        except ERAError as err:
            assert "401" in str(err) and {WRONG_TOKEN!r} not in str(err), str(err)
        first = push_model({str(model_dir)!r}, "test-user/era-minilm")
        assert first.created and len(first.commit) == 40, first
        card = ModelCard.load("test-user/era-minilm")
        card.validate()
        values = {{(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}}
        assert values[("adi", "ndcg_at_10")] == 0.61 and values[("adi", "ndcg_at_10_baseline_doc")] == 0.48
        assert card.data.library_name == "era_hf" and card.data.base_model == [{MINILM!r}]

        # re-push through the CLI with new evaluation numbers: a new commit in the same repo
        cli.COMMAND_MODULES = tuple(dict.fromkeys((*cli.COMMAND_MODULES, "era_hf.hub")))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli.main(["push", {str(retrained)!r}, "--repo-id", "test-user/era-minilm",
                             "--eval-results", {str(eval2)!r}]) == 0
        assert "pushed 10 file(s) to model repo" in out.getvalue(), out.getvalue()
        assert "removed 1 stale file(s)" in out.getvalue(), out.getvalue()
        second = api.model_info("test-user/era-minilm").sha
        assert second != first.commit
        card = ModelCard.load("test-user/era-minilm")
        assert {{r.metric_value for r in card.data.eval_results if r.dataset_name == "adi"
                and r.metric_type == "ndcg_at_10"}} == {{0.71}}

        # --revision: a branch (created from main); main stays where it was
        branch = push_model({str(retrained)!r}, "test-user/era-minilm", revision="experiment",
                            eval_results={str(eval3)!r})
        assert api.model_info("test-user/era-minilm").sha == second
        assert api.model_info("test-user/era-minilm", revision="experiment").sha == branch.commit != second

        # transformers' own push_to_hub with our save_pretrained override
        model = ERAModel.from_pretrained({str(model_dir)!r})
        model.push_to_hub("test-user/era-pth")

        index_push = push_index({str(root / "index")!r}, "test-user/era-index")
        index = DocumentIndex.load("test-user/era-index")
        assert index.encoder_info["document_encoder"] == {MINILM!r}
        import numpy as np
        _, ids = index.search(np.load({str(root / "expected.npy")!r}), k=3)
        assert ids == json.load(open({str(root / "expected_ids.json")!r})), ids
        print(json.dumps({{"first": first.commit, "second": second, "index": index_push.commit}}))
    """), tmp_path / "hf_home", token=DEFAULT_TOKEN, timeout=200, extra_env={"PYTHONPATH": str(REPO_ROOT)})
    shas = json.loads(proc.stdout.strip().splitlines()[-1])
    assert DEFAULT_TOKEN not in proc.stdout + proc.stderr
    assert not hub_server.repo_exists("test-user/brand-new")

    files = hub_server.list_files("test-user/era-minilm", revision=shas["first"])
    assert set(files) == {".gitattributes", "README.md", "config.json", "model.safetensors", "configuration_era.py",
                          "modeling_era.py", "heads.py", "errors.py", "text_encoding.py", "training_log.json",
                          "loss_curves.png", "eval_results.json"}  # no checkpoint junk
    assert files["model.safetensors"]["lfs"] and files["loss_curves.png"]["lfs"]
    assert set(hub_server.list_files("test-user/era-minilm")) == set(files) - {"loss_curves.png"}
    titles = [c["title"] for c in hub_server.commits("test-user/era-minilm")]
    assert len(titles) == 3 and titles[-1] == "initial commit"  # one commit per push (the branch has its own)
    assert hub_server.head("test-user/era-minilm", branch="experiment") not in (None, shas["second"])
    assert hub_server.head("test-user/era-minilm") == shas["second"]
    assert json.loads(hub_server.read_file("test-user/era-minilm", "eval_results.json"))["runs"][0]["tasks"][
        "adi"]["metrics"]["ndcg@10"] == 0.71
    assert hub_server.read_file("test-user/era-minilm", "model.safetensors") == \
        (model_dir / "model.safetensors").read_bytes()
    assert {"config.json", "model.safetensors", "modeling_era.py"} <= set(hub_server.list_files("test-user/era-pth"))
    index_files = hub_server.list_files("test-user/era-index", "dataset")
    assert set(index_files) == {".gitattributes", "README.md", "index.faiss", "documents.jsonl", "index_config.json"}
    readme = hub_server.read_file("test-user/era-index", "README.md", "dataset").decode()
    assert MINILM in readme and "4 documents" in readme and 'DocumentIndex.load("test-user/era-index")' in readme
    # the token pushed with is in no pushed file (cards included) nor commit message, at any revision
    checked = assert_token_not_pushed(hub_server, DEFAULT_TOKEN, [("test-user/era-minilm", "model"),
                                                                  ("test-user/era-pth", "model"),
                                                                  ("test-user/era-index", "dataset")])
    assert {"README.md", "config.json", "eval_results.json", "index_config.json"} <= {p for _, p in checked}

    # a fresh process where era_hf cannot be imported loads both pushed models by repo id
    proc = run_client(hub_server, textwrap.dedent(f"""
        import sys
        sys.modules["era_hf"] = None
        import numpy as np
        from transformers import AutoModel
        expected = np.load({str(root / "expected.npy")!r})
        for repo in ("test-user/era-minilm", "test-user/era-pth"):
            model = AutoModel.from_pretrained(repo, trust_remote_code=True)
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            np.testing.assert_allclose(model.encode_queries({QUERIES!r}), expected, atol=1e-5)
        print("REMOTE-OK")
    """), tmp_path / "hf_home", token=None, timeout=150)
    assert "REMOTE-OK" in proc.stdout


def test_wrong_token_is_one_clean_error_and_changes_nothing(published, hub_server, tmp_path):
    """`era-hf push` with a rejected token: exit 2, one `error:` line without the token, repo unchanged."""
    import subprocess

    hub_server.echo_tokens = True  # the 401 repeats the token it got, like a leaky proxy (see the round trip)
    hub_server.create_repo("test-user/guarded")
    head, files = hub_server.head("test-user/guarded"), hub_server.list_files("test-user/guarded")
    argv = ["push", str(published["model_dir"]), "--repo-id", "test-user/guarded", "--token", WRONG_TOKEN]
    env = {**client_env(hub_server, tmp_path / "hf_home"), "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", CLI_SHIM, *argv], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert "401" in lines[0] and "token" in lines[0]
    assert WRONG_TOKEN not in proc.stdout + proc.stderr
    assert hub_server.head("test-user/guarded") == head
    assert hub_server.list_files("test-user/guarded") == files


def test_token_echoed_by_the_server_is_scrubbed_from_every_error(published, tmp_path):
    """A server that repeats the credentials it got in its 403 (tests/hub_server.py ``echo_tokens``): the
    token is in the server message huggingface_hub hands era_hf, and in no raised message, no traceback,
    no CLI output. Both a hf_-shaped token and one the hf_ pattern cannot catch (``api_org_...``)."""
    import urllib.error
    import urllib.request

    model_dir = str(published["model_dir"])
    with HubServer(tmp_path / "hub", tokens={DEFAULT_TOKEN: DEFAULT_USER}, read_tokens=[READ_TOKEN, ORG_TOKEN],
                   echo_tokens=True) as server:
        server.create_repo("test-user/guarded")
        head, files = server.head("test-user/guarded"), server.list_files("test-user/guarded")
        request = urllib.request.Request(f"{server.url}/api/repos/create", data=b'{"name": "probe"}', method="POST",
                                         headers={"Authorization": f"Bearer {ORG_TOKEN}"})
        with pytest.raises(urllib.error.HTTPError) as raw:  # the precondition: the server does leak the token
            urllib.request.urlopen(request, timeout=30)
        assert raw.value.code == 403 and ORG_TOKEN in raw.value.read().decode()

        proc = run_client(server, textwrap.dedent(f"""
            import contextlib, io, json, traceback
            from era_hf import ERAError, cli
            from era_hf.hub import push_model
            results = {{}}
            for name, repo, token in (("hf-shaped", "test-user/guarded", {READ_TOKEN!r}),
                                      ("org-shaped", "test-user/brand-new", {ORG_TOKEN!r})):
                try:
                    push_model({model_dir!r}, repo, token=token)
                    raise SystemExit(name + ": a read-only token pushed")
                except ERAError as err:
                    shown = str(err) + repr(err) + "".join(traceback.format_exception(err))
                    server_said = err.__context__.server_message  # what era_hf got, before scrubbing
                    results[name] = {{"message": str(err), "leaked_by_server": token in server_said,
                                     "token_shown": token in shown}}
            cli.COMMAND_MODULES = tuple(dict.fromkeys((*cli.COMMAND_MODULES, "era_hf.hub")))
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = cli.main(["push", {model_dir!r}, "--repo-id", "test-user/guarded", "--token", {ORG_TOKEN!r}])
            results["cli"] = {{"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}}
            print(json.dumps(results))
        """), tmp_path / "hf_home", token=None, timeout=120, extra_env={"PYTHONPATH": str(REPO_ROOT)})
        results = json.loads(proc.stdout.strip().splitlines()[-1])
        for name in ("hf-shaped", "org-shaped"):
            result = results[name]
            assert result["leaked_by_server"] and not result["token_shown"], (name, result)
            assert "403 Forbidden" in result["message"] and "Bearer " in result["message"], (name, result)
            assert "***" in result["message"], (name, result)  # scrubbed where the server put it
        cli = results["cli"]
        assert cli["rc"] == 2 and cli["stdout"] == "" and cli["stderr"].count("\n") == 1, cli
        assert cli["stderr"].startswith("error: cannot create repo test-user/guarded: the token has no write access")
        for token in (READ_TOKEN, ORG_TOKEN):  # nor in anything the process printed (warnings, logs)
            assert token not in proc.stdout + proc.stderr + cli["stderr"]
        assert server.head("test-user/guarded") == head and server.list_files("test-user/guarded") == files
        assert not server.repo_exists("test-user/brand-new")


def test_pinned_hub_revisions_load_and_are_recorded(published, hub_server, tmp_path):
    """Push two models with different heads to one repo, then load each commit pinned by sha (and by tag):
    the head weights and embeddings are that commit's, and the revision recorded for result files
    (ERAMethod.describe(), from load_era_model or from a model the caller loaded) is the commit actually loaded;
    unpinned, main's head sha."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    v1 = published["model_dir"]
    v2 = shutil.copytree(v1, tmp_path / "model_v2", ignore=shutil.ignore_patterns("eval_results.json", "checkpoint-*"))
    with safe_open(str(v2 / "model.safetensors"), framework="pt") as f:
        metadata = f.metadata()
    save_file({k: t + 0.01 for k, t in load_file(v2 / "model.safetensors").items()}, v2 / "model.safetensors",
              metadata=metadata)
    (v2 / "eval_results.json").write_text(json.dumps(eval_json(v2, era_ndcg=0.70)))
    proc = run_client(hub_server, textwrap.dedent(f"""
        import hashlib, json
        import numpy as np, torch
        from huggingface_hub import HfApi
        from safetensors.torch import load_file
        from era_hf import ERAModel
        from era_hf.evaluation import ERAMethod
        from era_hf.hub import push_model
        api = HfApi(token={DEFAULT_TOKEN!r})
        api.create_repo({MINILM!r})
        api.upload_folder(folder_path={published["minilm"]!r}, repo_id={MINILM!r},
                          ignore_patterns=[".era_hf_complete", ".gitattributes", "README.md"])
        api.create_branch({MINILM!r}, branch={published["revision"]!r})
        repo = "test-user/era-pinned"
        c1 = push_model({str(v1)!r}, repo, token={DEFAULT_TOKEN!r}).commit
        c2 = push_model({str(v2)!r}, repo, token={DEFAULT_TOKEN!r}).commit
        assert c1 != c2 and api.model_info(repo).sha == c2
        api.create_tag(repo, tag="v1", revision=c1)
        local = {{c1: {str(v1)!r}, c2: {str(v2)!r}}}
        sha = lambda d: hashlib.sha256(open(d + "/model.safetensors", "rb").read()).hexdigest()

        # unpinned or by branch name: the commit actually loaded is recorded, not None / "main"
        for rev in (None, "main"):
            record = ERAMethod(repo, revision=rev).describe()
            assert record["revision"] == c2 and record["head_sha256"] == sha(local[c2]), (rev, record)
        embeddings = {{}}
        for rev, commit in ((c1, c1), ("v1", c1), (c2, c2)):  # c1 after main is cached: the pin wins
            want = load_file(local[commit] + "/model.safetensors")
            method = ERAMethod(repo, revision=rev)  # head only (what `era-hf evaluate --model-revision` runs)
            record = method.describe()
            assert record["model"] == repo and record["revision"] == commit, (rev, record)
            assert record["head_sha256"] == sha(local[commit]), (rev, record)
            models = [method.model] + ([ERAModel.from_pretrained(repo, revision=rev)] if rev != "v1" else [])
            for model in models:
                got = {{k: v for k, v in model.state_dict().items() if k.startswith("head.")}}
                assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), rev
            if rev != "v1":
                embeddings[rev] = models[-1].encode_queries({QUERIES!r})
                in_memory = ERAMethod(models[-1]).describe()  # an ERAModel loaded by the caller: its commit too
                assert in_memory["in_memory"] and in_memory["revision"] == commit, (rev, in_memory)
        expected = np.load({str(published["root"] / "expected.npy")!r})
        np.testing.assert_allclose(embeddings[c1], expected, atol=1e-5)
        assert not np.allclose(embeddings[c2], expected, atol=1e-3)
        print(json.dumps({{"c1": c1, "c2": c2}}))
    """), tmp_path / "hf_home", token=None, timeout=200, extra_env={"PYTHONPATH": str(REPO_ROOT)})
    commits = json.loads(proc.stdout.strip().splitlines()[-1])
    for commit, local in ((commits["c1"], v1), (commits["c2"], v2)):  # the server holds each push's own head
        assert hub_server.read_file("test-user/era-pinned", "model.safetensors", revision=commit) == \
            (local / "model.safetensors").read_bytes()
    assert hub_server.head("test-user/era-pinned") == commits["c2"]
    assert DEFAULT_TOKEN not in proc.stdout + proc.stderr
    assert_token_not_pushed(hub_server, DEFAULT_TOKEN, [("test-user/era-pinned", "model")])
