"""--unlabelled-queries: query logs without judgments join the task stage 1 reads, never its labels or split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import MINILM
from test_training import adi, cache_dir, head_tensors, small_args, write_beir  # noqa: F401 (fixtures)

from era_hf.errors import ERAError
from era_hf.tasks import load_task
from era_hf.tasks.unlabelled import add_unlabelled_queries, attach_query_logs, read_query_log

LOG = ["how are scientific articles indexed by computer", "automatic abstracting of technical reports",
       "evaluation of retrieval systems with relevance judgments", "thesaurus construction for a library",
       "citation indexing of journals", "cost of mechanised document retrieval"]


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name, content, message", [
    ("log.csv", "a query\n", "expected a .jsonl file .* or a .txt file .*got '.csv'"),
    ("log.jsonl", '{"text": "ok"}\n{"text": "broken\n', r"log.jsonl:2: invalid JSON"),
    ("log.jsonl", '{"text": "ok"}\n\n{"query": "x"}\n', r"log.jsonl:3: missing field 'text'"),
    ("log.jsonl", '{"text": "   "}\n', r"log.jsonl:1: field 'text' is blank"),
    ("log.jsonl", '{"text": 7}\n', r"log.jsonl:1: field 'text' must be a string, got int"),
    ("log.jsonl", '["a list"]\n', r"log.jsonl:1: expected a JSON object"),
    ("log.txt", "ok\n\xff\n", r"log.txt:2: not valid UTF-8"),
    ("log.txt", "\n  \n", "holds no query"),
])
def test_a_bad_log_is_refused_naming_its_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content.encode("latin-1") if name.endswith(".txt") else content.encode())
    with pytest.raises(ERAError, match=message):
        read_query_log(path)


def test_missing_log_is_named(tmp_path):
    with pytest.raises(ERAError, match="query log .*nope.txt does not exist"):
        read_query_log(tmp_path / "nope.txt")


def test_both_formats_give_the_texts_and_instructions_in_file_order(tmp_path):
    txt = write(tmp_path / "log.txt", "\ufefffirst query \n\nsecond\n")
    assert read_query_log(txt) == [(f"{txt}:1", "first query", ""), (f"{txt}:3", "second", "")]
    jsonl = write(tmp_path / "log.jsonl", '{"text": "a", "instruction": "Find papers."}\n{"_id": 3, "text": "b"}\n')
    assert [(t, i) for _, t, i in read_query_log(jsonl)] == [("a", "Find papers."), ("b", "")]


def test_a_log_adds_unjudged_queries_and_leaves_labels_split_and_test_queries_alone(adi, tmp_path):
    split = adi.split(0.2, 42)
    test_text, train_text = adi.query_texts([split.test[0]])[0], adi.query_texts([split.train[0]])[0]
    log = write(tmp_path / "past.txt", "\n".join([LOG[0], test_text, LOG[1], LOG[0], train_text, LOG[2]]) + "\n")
    logged, record = add_unlabelled_queries(adi, log)
    new_ids = ["log:past.txt:1", "log:past.txt:3", "log:past.txt:6"]
    assert logged.query_ids() == adi.query_ids() + new_ids
    assert logged.query_texts(new_ids) == [LOG[0], LOG[1], LOG[2]]
    assert record["added"] == 3 and record["left_out"] == {"repeats_a_task_query": 2, "repeats_the_log": 1}
    assert logged.qrels == adi.qrels and logged.judged_query_ids() == adi.judged_query_ids()
    assert logged.split(0.2, 42).to_dict() == split.to_dict()
    assert logged.query_texts(adi.query_ids()) == adi.query_texts(adi.query_ids())
    assert logged.revision != adi.revision and logged.revision == add_unlabelled_queries(adi, log)[0].revision
    assert logged.meta["unlabelled_queries"] == [record] and "unlabelled_queries" not in adi.meta
    assert record["sha256"] and record["task"] == "adi"


def test_each_log_goes_to_the_task_it_names(adi, tmp_path):
    other = load_task(str(write_beir(tmp_path / "synth", n_docs=20, n_queries=10, name="synth")))
    log = write(tmp_path / "log.txt", LOG[0] + "\n")
    with pytest.raises(ERAError, match=r"stage 1 reads 2 tasks \(adi, synth\); name the one .* TASK=FILE"):
        attach_query_logs([adi, other], [str(log)])
    with pytest.raises(ERAError, match="no task 'cisi' among the tasks stage 1 reads"):
        attach_query_logs([adi, other], [f"cisi={log}"])
    tasks, records = attach_query_logs([adi, other], [f"synth={log}"])
    assert tasks[0] is adi and tasks[1].query_ids()[-1] == "log:log.txt:1" and records[0]["task"] == "synth"
    (alone,), _ = attach_query_logs([adi], [str(log)])
    assert alone.query_ids()[-1] == "log:log.txt:1"
    odd = write(tmp_path / "a=b.txt", LOG[1] + "\n")  # a file whose name holds '=' is still a file
    (named,), _ = attach_query_logs([adi], [str(odd)])
    assert named.query_texts(["log:a=b.txt:1"]) == [LOG[1]]


def test_the_log_reaches_the_distillation_and_changes_the_adapter(adi, tmp_path, cache_dir):
    from era_hf.cache import EmbeddingCache
    from era_hf.model_card import build_model_card
    from era_hf.task_embeddings import EncoderPair
    from era_hf.train import main
    from era_hf.training.data import Embedder, build_distillation_data, prepare_tasks

    log = write(tmp_path / "past.jsonl", "".join(json.dumps({"text": t}) + "\n" for t in LOG))
    args = small_args(tmp_path / "x", cache_dir, recipe="recommended", alignment={"distill_steps": 15})
    embedder = Embedder(EncoderPair(MINILM, MINILM, cache=EmbeddingCache(cache_dir)))
    (logged,), _ = attach_query_logs([adi], [str(log)])
    (plain,) = build_distillation_data(prepare_tasks([adi], args), embedder, args)
    (group,) = build_distillation_data(prepare_tasks([logged], args), embedder, args)
    assert group.n_queries == plain.n_queries + len(LOG) and (group.own_doc[-len(LOG):] == -1).all()
    assert np.allclose(group.queries[-len(LOG):].numpy(), embedder.query_side(LOG), atol=1e-6)

    def train(out, *extra):
        return main(["--tasks", str(adi.source), "--recipe", "recommended", "--query-encoder", MINILM,
                     "--document-encoder", MINILM, "--output", str(out), "--cache-dir", str(cache_dir), "--quiet",
                     "--no-plot", "--alignment.distill-steps", "15", "--adaptation.epochs", "2", *extra])

    assert train(tmp_path / "with", "--unlabelled-queries", f"adi={log}") == 0
    assert train(tmp_path / "without") == 0
    with_log, without = head_tensors(tmp_path / "with"), head_tensors(tmp_path / "without")
    assert any(not torch.equal(with_log[k], without[k]) for k in with_log)
    record = json.loads((tmp_path / "with" / "training_log.json").read_text())["unlabelled_queries"]
    assert [(r["task"], r["added"], r["file"]) for r in record] == [("adi", len(LOG), str(log))]
    card = build_model_card(tmp_path / "with").text
    assert f"Query log without judgments: {len(LOG)} queries of `past.jsonl`" in card
    config = json.loads((tmp_path / "with" / "config.json").read_text())
    assert config["recipe"] == "recommended (modified)"  # the distillation steps; the log is data, not a setting
    assert "unlabelled_queries" not in config["training"]["recipe_overrides"]


def test_a_run_that_reads_no_unlabelled_text_refuses_a_log(adi, tmp_path, cache_dir, capsys):
    from era_hf.train import main

    log = write(tmp_path / "log.txt", LOG[0] + "\n")
    rc = main(["--tasks", str(adi.source), "--recipe", "reference", "--query-encoder", MINILM, "--document-encoder",
               MINILM, "--output", str(tmp_path / "out"), "--cache-dir", str(cache_dir), "--quiet",
               "--unlabelled-queries", str(log)])
    assert rc == 2 and "no step of this run reads unlabelled query texts" in capsys.readouterr().err
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_with_alignment_tasks_the_log_joins_the_index_stage_1_reads(adi, tmp_path, cache_dir):
    from era_hf.training import ERATrainer

    other = load_task(str(write_beir(tmp_path / "synth", n_docs=20, n_queries=10, name="synth")))
    log = write(tmp_path / "log.txt", LOG[0] + "\n")
    args = small_args(tmp_path / "out", cache_dir, recipe="recommended", unlabelled_queries=[f"synth={log}"])
    trainer = ERATrainer(None, [adi], args, alignment_tasks=[other])
    tasks, stage1_tasks, records = trainer._attach_query_logs([adi], [other])
    assert tasks == [adi] and stage1_tasks[0].query_texts(["log:log.txt:1"]) == [LOG[0]] and records[0]["added"] == 1
    args.unlabelled_queries = [f"adi={log}"]
    with pytest.raises(ERAError, match=r"no task 'adi' among the tasks stage 1 reads \(synth\)"):
        trainer._attach_query_logs([adi], [other])
