"""Tests for era_hf.tasks: loaders, validation errors, the paper's split, builtin code task."""

from __future__ import annotations

import ast
import itertools
import json
import random
import re
import subprocess
import sys
import warnings
from pathlib import Path

import datasets
import pytest

from era_hf import cli
from era_hf.errors import ERAError
from era_hf.tasks import (
    QrelsWarning,
    RetrievalTask,
    beir_task_from_rows,
    build_stdlib_code_task,
    load_suite,
    load_task,
    mair_task_from_rows,
    mair_task_from_splits,
    make_split,
    read_query_log,
)
from era_hf.tasks.mair import MAIR_TASKS, mair_task_names, parse_mair_spec
from era_hf.tasks.stdlib_code import MAX_SUMMARY_WORDS, MIN_SUMMARY_WORDS, STDLIB_CODE_INSTRUCTION, stdlib_files

from conftest import SHARED_DATA, offline_env

DATA = SHARED_DATA  # <clone>/../shared/data, wherever the clone is
FIXTURES = Path(__file__).parent / "fixtures"
COLLECTIONS = ["adi", "cisi", "cranfield", "medline", "vaswani"]
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared collections not present at {DATA}")


# -- helpers ------------------------------------------------------------------------------
def write_task(root: Path, corpus: list | bytes, queries: list | bytes, qrels: str, meta: dict | None = None) -> Path:
    """A BEIR task directory; list items are JSON-encoded lines, raw strings are written verbatim."""

    def lines(items: list | bytes) -> bytes:
        if isinstance(items, bytes):
            return items
        return "".join((i if isinstance(i, str) else json.dumps(i)) + "\n" for i in items).encode()

    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_bytes(lines(corpus))
    (root / "queries.jsonl").write_bytes(lines(queries))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    if meta is not None:
        (root / "meta.json").write_text(json.dumps(meta))
    return root


DOCS = [{"_id": "d1", "title": "T1", "text": "one"}, {"_id": "d2", "title": "", "text": "two"}]
QUERIES = [{"_id": "q1", "text": "first"}, {"_id": "q2", "text": "second", "instruction": "Own instruction."}]


def load_json_splits(cache: Path, **files: str) -> datasets.DatasetDict:
    """Load fixture files as a DatasetDict the way the Hub's JSON configs load."""
    return datasets.load_dataset(
        "json", data_files={k: str(FIXTURES / v) for k, v in files.items()}, cache_dir=str(cache)
    )


# -- shared collections ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def suite() -> dict[str, RetrievalTask]:
    return {task.name: task for task in load_suite(str(DATA))}


@needs_data
@pytest.mark.parametrize("name", COLLECTIONS)
def test_shared_collection_counts_match_meta(suite, name):
    task, meta = suite[name], json.loads((DATA / name / "meta.json").read_text())
    assert task.corpus.num_rows == meta["num_docs"]
    assert task.queries.num_rows == meta["num_queries"]
    assert len(task.judged_query_ids()) == meta["num_queries_with_qrels"]
    assert sum(len(docs) for docs in task.qrels.values()) == meta["num_qrels"]
    assert (task.domain, task.instruction) == (meta["domain"], meta["instruction"])
    assert task.skipped_qrels == {} and task.revision.startswith("sha256:")
    assert task.meta["sha256"] == meta["sha256"]


@needs_data
def test_suite_order_texts_and_instructions(suite):
    assert list(suite) == COLLECTIONS
    adi, medline = suite["adi"], suite["medline"]
    first = adi.corpus[0]
    assert adi.document_texts()[0] == f"{first['title']} {first['text']}"
    assert medline.document_texts()[0] == medline.corpus[0]["text"]  # no title: no leading space
    qids = adi.judged_query_ids()[:2]
    assert adi.query_instructions(qids) == [adi.instruction] * 2
    assert adi.query_texts(qids) == [adi.queries[0]["text"], adi.queries[1]["text"]]
    with pytest.raises(ERAError, match="unknown query id 'nope'"):
        adi.query_texts(["nope"])


@needs_data
def test_cisi_unjudged_queries_kept_but_not_judged(suite):
    cisi = suite["cisi"]
    unjudged = set(cisi.query_ids()) - set(cisi.judged_query_ids())
    assert len(unjudged) == 36 and not unjudged & set(cisi.split().test + cisi.split().train)


# -- splits -------------------------------------------------------------------------------------
RATIOS = (0.05, 0.1, 0.2, 0.4)
IDS_35 = [f"q{i}" for i in range(35)]


def test_split_sizes_for_35_queries():
    sizes = {r: make_split(IDS_35, r) for r in RATIOS}
    assert [len(s.train) for s in sizes.values()] == [1, 3, 7, 14]
    assert {(len(s.val), len(s.test)) for s in sizes.values()} == {(4, 17)}


@pytest.mark.parametrize("n", [4, 10, 35, 76, 225])
def test_split_disjoint_nested_and_deterministic(n):
    ids = [str(i) for i in range(n)]
    splits = [make_split(ids, r, seed=42) for r in RATIOS]
    for s in splits:
        assert not (set(s.train) & set(s.val) or set(s.train) & set(s.test) or set(s.val) & set(s.test))
        assert set(s.train + s.val + s.test) <= set(ids) and len(s.test) == n // 2
    for small, large in itertools.pairwise(splits):
        assert large.train[: len(small.train)] == small.train
        assert (small.val, small.test) == (large.val, large.test)
    assert make_split(ids, 0.2, seed=42) == splits[2]
    expected = list(ids)
    random.Random(42).shuffle(expected)
    assert splits[2].test == expected[n - n // 2 :]


@needs_data
def test_task_split_uses_judged_queries_and_serialises(suite):
    split = suite["adi"].split(0.2, seed=42)
    assert split == suite["adi"].split(0.2, seed=42) and split != suite["adi"].split(0.2, seed=7)
    record = json.loads(json.dumps(split.to_dict()))
    assert (
        record["task"] == "adi"
        and record["n_judged"] == 35
        and (record["n_train"], record["n_val"], record["n_test"]) == (7, 4, 17)
    )


@pytest.mark.parametrize("ratio", [0, 1, 1.5, -0.1, "0.2"])
def test_split_rejects_bad_ratio(ratio):
    with pytest.raises(ERAError, match="label_ratio"):
        make_split(IDS_35, ratio, task="t")


def test_split_of_tiny_task_names_task_and_ratio():
    with pytest.raises(ERAError, match=r"'tiny' has only 2 judged queries.*label_ratio=0.2"):
        make_split(["a", "b"], 0.2, task="tiny")


# -- BEIR directory: content and errors ---------------------------------------------------------
def test_beir_dir_meta_instructions_and_unjudged(tmp_path):
    meta = {"name": "toy", "domain": "demo", "instruction": "Task instruction."}
    root = write_task(tmp_path / "t", DOCS, QUERIES, "q1\td1\t2\nq2\td2\t0\n", meta=meta)
    task = load_task(str(root))
    assert (task.name, task.domain, task.instruction) == ("toy", "demo", "Task instruction.")
    assert task.document_texts() == ["T1 one", "two"] and task.document_ids() == ["d1", "d2"]
    assert task.query_instructions(["q1", "q2"]) == ["Task instruction.", "Own instruction."]
    assert task.qrels == {"q1": {"d1": 2}, "q2": {"d2": 0}} and task.judged_query_ids() == ["q1"]


def test_beir_dir_revision_tracks_content(tmp_path):
    first = load_task(str(write_task(tmp_path / "a", DOCS, QUERIES, "q1\td1\t1\n")))
    same = load_task(str(write_task(tmp_path / "b", DOCS, QUERIES, "q1\td1\t1\n")))
    other = load_task(str(write_task(tmp_path / "c", DOCS, QUERIES, "q1\td2\t1\n")))
    assert first.revision == same.revision != other.revision
    assert first.name == "a" and first.domain == "general" and first.instruction


@pytest.mark.parametrize(
    ("corpus", "match"),
    [
        ([DOCS[0], '{"_id": "d2", "text": '], r"corpus\.jsonl:2: invalid JSON"),
        ([DOCS[0], '["not", "an", "object"]'], r"corpus\.jsonl:2: expected a JSON object"),
        ([DOCS[0], {"title": "x", "text": "y"}], r"corpus\.jsonl:2: missing field '_id'"),
        ([DOCS[0], "", {"_id": "d3", "title": "x"}], r"corpus\.jsonl:3: missing field 'text'"),
        ([DOCS[0], {"_id": "d2", "text": 5}], r"corpus\.jsonl:2: field 'text' must be a string"),
        (
            [DOCS[0], DOCS[1], {"_id": "d1", "text": "again"}],
            r"duplicate document id 'd1' at \S*corpus\.jsonl:1 and \S*corpus\.jsonl:3",
        ),
        ([], "corpus is empty"),
    ],
)
def test_beir_dir_corpus_errors_name_file_and_line(tmp_path, corpus, match):
    root = write_task(tmp_path / "t", corpus, QUERIES, "q1\td1\t1\n")
    with pytest.raises(ERAError, match=match):
        load_task(str(root))


def test_beir_dir_non_utf8_and_duplicate_query(tmp_path):
    bad = json.dumps(DOCS[0]).encode() + b"\n" + b'{"_id": "d2", "text": "caf\xe9"}\n'
    with pytest.raises(ERAError, match=r"corpus\.jsonl:2: not valid UTF-8"):
        load_task(str(write_task(tmp_path / "a", bad, QUERIES, "")))
    with pytest.raises(ERAError, match=r"duplicate query id 'q1' at \S*queries\.jsonl:1 and \S*queries\.jsonl:2"):
        load_task(str(write_task(tmp_path / "b", DOCS, [QUERIES[0], QUERIES[0]], "")))


@pytest.mark.parametrize(
    ("qrels", "match"),
    [
        ("q1\td1\t-1\n", r"test\.tsv:2: relevance score must be >= 0"),
        ("q1\td1\t1\nq2\td2\t0.5\n", r"test\.tsv:3: relevance score must be an integer"),
        ("q1\td1\tyes\n", r"test\.tsv:2: relevance score must be an integer"),
        ("q1\td1\n", r"test\.tsv:2: expected 3 tab-separated columns"),
        ("q1\t0\td1\t1\n", r"test\.tsv:2: expected 3 tab-separated columns"),
        ("q1\td1\t1\nq1\td1\t2\n", r"conflicting scores for \('q1', 'd1'\)"),
    ],
)
def test_beir_dir_qrels_errors(tmp_path, qrels, match):
    with pytest.raises(ERAError, match=match):
        load_task(str(write_task(tmp_path / "t", DOCS, QUERIES, qrels)))


def test_beir_dir_unknown_qrel_ids_warn_once_and_are_counted(tmp_path):
    qrels = "q1\td1\t1\nq9\td1\t1\nq1\td9\t1\nq1\td8\t1\n"
    with pytest.warns(QrelsWarning) as caught:
        task = load_task(str(write_task(tmp_path / "t", DOCS, QUERIES, qrels)))
    assert len(caught) == 1
    assert "skipped 3" in str(caught[0].message) and "'q9'" in str(caught[0].message)
    assert task.skipped_qrels == {"unknown_query": 1, "unknown_document": 2}
    assert task.qrels == {"q1": {"d1": 1}}


def test_beir_dir_missing_split_and_bad_meta(tmp_path):
    root = write_task(tmp_path / "t", DOCS, QUERIES, "q1\td1\t1\n")
    with pytest.raises(ERAError, match=r"no qrels for split 'dev'.*available: \['test'\]"):
        load_task(str(root), split="dev")
    (root / "meta.json").write_text('{"name": "x",\n "domain": }')
    with pytest.raises(ERAError, match=r"meta\.json:2: invalid JSON"):
        load_task(str(root))


# -- BEIR directory: audit of hand-made task folders ------------------------------------------------
SURROGATE = r'"bad \ud800 x"'  # a JSON escape that decodes to an unpaired surrogate


@pytest.mark.parametrize(
    ("remove", "match"),
    [
        (["queries.jsonl"], r"incomplete BEIR task directory: missing queries\.jsonl \("),
        (["corpus.jsonl"], r"incomplete BEIR task directory: missing corpus\.jsonl \("),
        (["queries.jsonl", "qrels/test.tsv"], r"incomplete BEIR task directory: missing queries\.jsonl, qrels/test"),
    ],
)
def test_beir_dir_missing_required_file_named_up_front(tmp_path, remove, match):
    root = write_task(tmp_path / "t", [DOCS[0], "{broken"], QUERIES, "q1\td1\t1\n")  # broken corpus: never read
    for name in remove:
        (root / name).unlink()
    with pytest.raises(ERAError, match=rf"^{re.escape(str(root))}: {match}"):
        load_task(str(root))
    # In a suite, an incomplete task folder is refused too (it used to be skipped when it lacked corpus.jsonl).
    write_task(tmp_path / "suite" / "a", DOCS, QUERIES, "q1\td1\t1\n")
    root.rename(tmp_path / "suite" / "b")
    with pytest.raises(ERAError, match=rf"suite/b: {match}"):
        load_suite(str(tmp_path / "suite"))


@pytest.mark.parametrize(
    ("file", "line"),
    [
        ("corpus.jsonl", '{"_id": "d3", "text": ' + SURROGATE + "}"),
        ("corpus.jsonl", '{"_id": "d3", "title": ' + SURROGATE + ', "text": "x"}'),
        ("queries.jsonl", '{"_id": "q3", "text": ' + SURROGATE + "}"),
        ("queries.jsonl", '{"_id": "q3", "text": "ok", "instruction": "\\udc00 reversed \\ud83d"}'),
        ("log.jsonl", '{"text": ' + SURROGATE + "}"),
    ],
)
def test_unpaired_surrogate_is_refused_naming_file_and_line(tmp_path, file, line):
    docs = [*DOCS, r'{"_id": "x2", "text": "emoji \ud83d\ude00 is a valid pair"}']  # a pair: one character
    queries = [*QUERIES, line] if file == "queries.jsonl" else QUERIES
    root = write_task(tmp_path / "t", [*docs, line] if file == "corpus.jsonl" else docs, queries, "q1\td1\t1\n")
    message = rf"{file}:[34]: field '\w+' holds an unpaired surrogate \\ud[89a-f]\w\w at character \d+: invalid"
    with pytest.raises(ERAError, match=message):
        if file == "log.jsonl":
            (tmp_path / file).write_text('{"text": "a fine query"}\n\n' + line + "\n")
            read_query_log(tmp_path / file)
        else:
            load_task(str(root))
    if file == "corpus.jsonl":  # the file without the bad line loads, the surrogate pair as one character
        write_task(tmp_path / "ok", docs, QUERIES, "q1\td1\t1\n")
        assert load_task(str(tmp_path / "ok")).document_texts()[2] == "emoji \U0001f600 is a valid pair"


@pytest.mark.parametrize("text", ["", "   ", "\t\n "])
@pytest.mark.parametrize("source", ["dir", "hub rows"])
def test_blank_query_text_is_refused_with_file_line_and_id(tmp_path, text, source):
    queries = [QUERIES[0], {"_id": "q0", "text": text}]
    if source == "dir":
        with pytest.raises(ERAError, match=r"queries\.jsonl:2: query 'q0' has (an empty|a blank) 'text'"):
            load_task(str(write_task(tmp_path / "t", DOCS, queries, "q1\td1\t1\n")))
    else:
        with pytest.raises(ERAError, match=r"BeIR/toy queries row 2: query 'q0' has (an empty|a blank) 'text'"):
            beir_task_from_rows("toy", DOCS, queries, [{"query-id": "q1", "corpus-id": "d1", "score": 1}])
    # Documents stay as BEIR has them: a title without text (and even neither, as in cranfield) is kept.
    docs = [*DOCS, {"_id": "d3", "title": "Only a title", "text": text}, {"_id": "d4", "title": "", "text": text}]
    task = load_task(str(write_task(tmp_path / "docs", docs, QUERIES, "q1\td3\t1\n")))
    assert task.document_texts()[2:] == [f"Only a title {text}", text]


@pytest.mark.parametrize(
    ("qrels", "found"),
    [
        ("q1\td1\t0\nq2\td2\t0\n", r"2 judgement\(s\) of known ids, all with score 0$"),
        ("q9\td1\t1\nq1\td9\t2\n", r"2 naming unknown query or document ids \(skipped\)$"),
        ("q1\td1\t0\nq1\td9\t1\n", r"1 judgement\(s\) of known ids, all with score 0; 1 naming unknown"),
        ("", "no judgement$"),
    ],
)
def test_no_relevant_judgement_is_said_plainly_naming_the_qrels_file(tmp_path, qrels, found):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QrelsWarning)
        task = load_task(str(write_task(tmp_path / "t", DOCS, QUERIES, qrels)))
    qrels_file = tmp_path / "t" / "qrels" / "test.tsv"
    with pytest.raises(ERAError) as caught:
        task.split(0.2)
    message = str(caught.value)
    assert message.startswith(f"task 't': no query has a relevant judged document (a score > 0 for a query and "
                              f"a document of the task) in {qrels_file}; found ")
    assert re.search(found, message) and "has only 0" not in message, message
    with pytest.raises(ERAError, match=r"task 'x' has no judged query \(none with a relevance score > 0\)"):
        make_split([], 0.2, task="x")


@pytest.mark.parametrize("target", ["qrels/test.tsv", "queries.jsonl", "corpus.jsonl"])
def test_data_file_that_is_a_directory_is_said_not_a_file(tmp_path, target):
    root = write_task(tmp_path / "t", DOCS, QUERIES, "q1\td1\t1\n")
    (root / target).unlink()
    (root / target).mkdir()
    path = re.escape(str(root / target))
    with pytest.raises(ERAError, match=rf"^{path} is not a file \(a directory\); a BEIR task directory holds"):
        load_suite(str(root))


@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        ("t/corpus.jsonl", "t"),
        ("t/qrels/test.tsv", "t"),
        ("notes.txt", None),
        ("corpus.jsonl", "."),  # no path separator: used to be "unrecognised task spec"
    ],
)
def test_a_file_given_as_task_directory_is_said_to_be_a_file(tmp_path, monkeypatch, spec, hint):
    write_task(tmp_path / "t", DOCS, QUERIES, "q1\td1\t1\n")
    (tmp_path / "notes.txt").write_text("not a task\n")
    if spec == "corpus.jsonl":
        monkeypatch.chdir(tmp_path / "t")
    else:
        spec = str(tmp_path / spec)
    expected = f"{spec!r} is a file, not a task directory (a task directory holds corpus.jsonl, queries.jsonl"
    for load in (load_task, load_suite):  # a suite path that is a file too
        with pytest.raises(ERAError) as caught:
            load(spec)
        message = str(caught.value)
        assert message.startswith(expected) and "does not exist" not in message, message
        if hint is None:
            assert "did you mean" not in message
        else:
            folder = hint if hint == "." else str(tmp_path / hint)
            assert message.endswith(f"; did you mean its folder {folder!r}?"), message


@pytest.mark.parametrize("content", ["nothing", "unrelated files", "subfolders without corpus.jsonl"])
def test_directory_neither_task_nor_suite_says_so(tmp_path, content):
    root = tmp_path / "d"
    root.mkdir()
    if content == "unrelated files":
        (root / "README.md").write_text("hi\n")
    elif content == "subfolders without corpus.jsonl":
        (root / "x" / "data").mkdir(parents=True)
        (root / "x" / "data" / "corpus.jsonl").write_text(json.dumps(DOCS[0]) + "\n")  # one level too deep
    message = r": neither a task directory \(no corpus\.jsonl\) nor a suite of task directories \(no subdirectory"
    with pytest.raises(ERAError, match=f"^{re.escape(str(root))}{message}"):
        load_suite(str(root))


@pytest.mark.parametrize(
    "header",
    ["qid\tdocid\trel", "Query-ID\tCorpus-ID\tRelevance", "\ufeffq\td\tlabel", "topic\tdocument\tjudgement"],
)
def test_qrels_any_first_line_with_a_non_numeric_score_is_a_header(tmp_path, header):
    """BEIR's loader skips the first qrels line whatever it holds; here a first line is a header when its score
    column is not a number, so a file without a header keeps its first judgement.  The files use the unusual
    but valid forms too: CRLF, a byte-order mark, blank lines, NUL and non-ASCII characters."""
    first = json.dumps({"_id": "d1", "text": "nul\u0000 é 😀"}, ensure_ascii=False)  # NUL stays escaped
    corpus = f"\ufeff{first}\r\n\r\n{json.dumps(DOCS[1])}\r\n".encode()
    root = write_task(tmp_path / "t", corpus, QUERIES, "")
    body = "q1\td1\t1\r\n\r\nq2\td2\t2\r\n"
    (root / "qrels" / "test.tsv").write_bytes(f"{header}\r\n{body}".encode())
    task = load_task(str(root))
    assert task.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2}} and task.document_texts()[0] == "nul\u0000 é 😀"
    (root / "qrels" / "test.tsv").write_bytes(("\ufeff" + body).encode())  # no header: the first line is data
    assert load_task(str(root)).qrels == {"q1": {"d1": 1}, "q2": {"d2": 2}}
    spaced = r"test\.tsv:1: expected 3 tab-separated columns .*got 1; it looks like a header: BEIR's is 'query-id\\t"
    for bad, message in (("q1\td1\t0.5\n", r"test\.tsv:1: relevance score must be an integer, got '0\.5'"),
                         ("query-id corpus-id score\n", spaced)):
        (root / "qrels" / "test.tsv").write_text(bad + body)
        with pytest.raises(ERAError, match=message):
            load_task(str(root))


CLI_CASES = {
    "missing queries.jsonl": r"^error: \S+/t: incomplete BEIR task directory: missing queries\.jsonl",
    "unpaired surrogate": r"^error: \S+/corpus\.jsonl:3: field 'text' holds an unpaired surrogate \\ud800",
    "blank query": r"^error: \S+/queries\.jsonl:3: query 'q0' has a blank 'text'",
    "corpus.jsonl as task": r"^error: '\S+/t/corpus\.jsonl' is a file, not a task directory .*did you mean",
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_evaluate_prints_one_error_line_for_a_bad_task_folder(tmp_path, capsys, case):
    root = write_task(tmp_path / "t", DOCS, QUERIES, "q1\td1\t1\n")
    spec = str(root)
    if case == "missing queries.jsonl":
        (root / "queries.jsonl").unlink()
    elif case == "unpaired surrogate":
        (root / "corpus.jsonl").write_text(f"{json.dumps(DOCS[0])}\n{json.dumps(DOCS[1])}\n"
                                           f'{{"_id": "d3", "text": {SURROGATE}}}\n')
    elif case == "blank query":
        blank = {"_id": "q0", "text": " "}
        (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in [*QUERIES, blank]))
    else:
        spec = str(root / "corpus.jsonl")
    code = cli.main(["evaluate", "--task", spec, "--baseline", "doc", "--no-cache"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert re.search(CLI_CASES[case], err.strip().splitlines()[-1]), err


# -- Hub schemas (converters on local files) -------------------------------------------------------
def test_mair_single_split_from_hub_schema(tmp_path):
    queries = load_json_splits(tmp_path, queries="mair_hub/queries.jsonl")["queries"]
    docs = load_json_splits(tmp_path, docs="mair_hub/docs.jsonl")["docs"]
    with pytest.warns(QrelsWarning, match="skipped 1"):
        task = mair_task_from_rows("APPS", queries, docs, revision="abc")
    assert (task.name, task.domain, task.revision) == ("APPS", "Code", "abc")
    assert task.instruction == "Given a programming problem, retrieve a Python solution that solves it."
    assert task.query_instructions(["apps-3"]) == ["Given a coding question, retrieve code that answers it."]
    assert task.qrels == {"apps-1": {"sol-1": 1}, "apps-2": {"sol-2": 2, "sol-3": 0}, "apps-3": {"sol-3": 1}}
    assert task.judged_query_ids() == ["apps-1", "apps-2", "apps-3"] and task.queries.num_rows == 4
    assert task.document_texts()[1] == "print(input()[::-1])" and task.skipped_qrels == {"unknown_document": 1}


def test_mair_groups_merged_or_selected(tmp_path):
    queries = load_json_splits(
        tmp_path, alpha_queries="mair_hub/alpha_queries.jsonl", beta_queries="mair_hub/beta_queries.jsonl"
    )
    docs = load_json_splits(tmp_path, alpha_docs="mair_hub/alpha_docs.jsonl", beta_docs="mair_hub/beta_docs.jsonl")
    merged = mair_task_from_splits("IFEval", queries, docs)
    assert merged.document_ids() == ["alpha/1", "alpha/2", "beta/1", "beta/2"]
    assert merged.qrels == {"alpha/1": {"alpha/1": 1}, "alpha/2": {"alpha/2": 1}, "beta/1": {"beta/1": 1}}
    assert merged.meta["groups"] == ["alpha", "beta"] and merged.domain == "Web"
    beta = mair_task_from_splits("IFEval", queries, docs, group="beta")
    assert beta.name == "IFEval.beta" and beta.document_ids() == ["1", "2"] and beta.qrels == {"1": {"1": 1}}
    with pytest.raises(ERAError, match=r"no group 'gamma'.*'alpha', 'beta'"):
        mair_task_from_splits("IFEval", queries, docs, group="gamma")


def test_mair_row_errors_and_spec_parsing():
    with pytest.raises(ERAError, match=r"MAIR-Queries\[APPS/queries\] row 1: missing field 'labels'"):
        mair_task_from_rows("APPS", [{"qid": "1", "query": "q", "instruction": ""}], [{"id": "a", "doc": "x"}])
    with pytest.raises(ERAError, match=r"MAIR-Docs\[APPS/docs\] row 2: field 'doc' must be a string"):
        mair_task_from_rows("APPS", [], [{"id": "a", "doc": "x"}, {"id": "b", "doc": None}])
    columnar = [{"qid": 1, "query": "q", "instruction": "", "labels": {"id": [7], "score": [1.0]}}]
    assert mair_task_from_rows("APPS", columnar, [{"id": 7, "doc": "x"}]).qrels == {"1": {"7": 1}}
    assert parse_mair_spec("MAIR-Bench/MAIR-Queries/MISeD/Bmr006_queries") == ("MISeD", "Bmr006")
    assert parse_mair_spec("mair:APPS") == ("APPS", None)
    with pytest.raises(ERAError, match=r"unknown MAIR task 'APS'.*APPS"):
        parse_mair_spec("mair:APS")
    assert len(MAIR_TASKS) == 126 and len(set(MAIR_TASKS.values())) == 6 and len(mair_task_names("Code")) == 18


def test_beir_hub_schema(tmp_path):
    corpus = load_json_splits(tmp_path, corpus="beir_hub/corpus.jsonl")["corpus"]
    queries = load_json_splits(tmp_path, queries="beir_hub/queries.jsonl")["queries"]
    qrels = datasets.load_dataset(
        "csv", data_files={"test": str(FIXTURES / "beir_hub/qrels_test.tsv")}, delimiter="\t", cache_dir=str(tmp_path)
    )["test"]
    assert qrels.features["query-id"].dtype == "int64"  # ids arrive as ints, as on the Hub
    with pytest.warns(QrelsWarning, match="1 unknown document"):
        task = beir_task_from_rows("scifact", corpus, queries, qrels, revision="r1")
    assert (task.domain, task.source, task.revision) == ("scientific", "BeIR/scifact", "r1")
    assert task.qrels == {"1": {"4983": 1}, "5": {"5836": 1, "7912": 1}}
    assert task.judged_query_ids() == ["1", "5"] and task.document_texts()[2] == "A record with no title."


OFFLINE_SPECS = ["mair:APPS", "MAIR-Bench/CliniDS_2016", "BeIR/scifact"]

# Run in a fresh interpreter: HF_HUB_OFFLINE / HF_DATASETS_OFFLINE and the cache paths are read when
# huggingface_hub / datasets are imported, so they are set in the environment before any import.
LOAD_OFFLINE_SCRIPT = """
import json, sys, traceback
import datasets, huggingface_hub.constants as hub
from era_hf.errors import ERAError
from era_hf.tasks import load_task
outcomes = {}
for spec in sys.argv[2:]:
    try:
        load_task(spec)
    except ERAError as err:
        outcomes[spec] = {"raised": "ERAError", "message": str(err)}
    except Exception as err:
        outcomes[spec] = {"raised": type(err).__qualname__, "message": traceback.format_exc()}
    else:
        outcomes[spec] = {"raised": None, "message": "loaded"}
seen = {"hub_offline": hub.HF_HUB_OFFLINE, "datasets_offline": datasets.config.HF_DATASETS_OFFLINE,
        "hub_cache": str(hub.HF_HUB_CACHE), "datasets_cache": str(datasets.config.HF_DATASETS_CACHE)}
with open(sys.argv[1], "w") as f:
    json.dump({"seen": seen, "outcomes": outcomes}, f)
"""


@pytest.fixture(scope="module")
def offline_load_outcomes(tmp_path_factory) -> dict[str, dict]:
    """``load_task(spec)`` for each of OFFLINE_SPECS in one offline process with empty caches (imports cost seconds)."""
    root = tmp_path_factory.mktemp("offline_hub")
    out = root / "outcomes.json"
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_OFFLINE_SCRIPT, str(out), *OFFLINE_SPECS],
        env=offline_env(root), cwd=root, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = json.loads(out.read_text())
    # The variables took effect: the libraries themselves report offline mode and the empty caches.
    assert record["seen"]["hub_offline"] is True and record["seen"]["datasets_offline"] is True, record["seen"]
    assert Path(record["seen"]["hub_cache"]) == root / "hub", record["seen"]
    assert Path(record["seen"]["datasets_cache"]) == root / "datasets", record["seen"]
    return record["outcomes"]


@pytest.mark.parametrize("spec", OFFLINE_SPECS)
def test_hub_offline_raises_era_error(offline_load_outcomes, spec):
    outcome = offline_load_outcomes[spec]
    assert outcome["raised"] == "ERAError", outcome
    assert "Hugging Face Hub cannot be reached" in outcome["message"], outcome["message"]


# -- dispatch and suites ---------------------------------------------------------------------------
def test_load_task_dispatch_errors(tmp_path):
    with pytest.raises(
        ERAError, match=r"unrecognised task spec 'squad'.*builtin:stdlib-code.*mair:<Task>.*BeIR/<name>"
    ):
        load_task("squad")
    with pytest.raises(ERAError, match="does not exist"):
        load_task(str(tmp_path / "missing"))
    with pytest.raises(ERAError, match="not a BEIR task directory"):
        load_task(str(tmp_path))
    with pytest.raises(ERAError, match="only a 'test' split"):
        load_task("builtin:stdlib-code", split="train")


def test_load_suite_from_dir_list_and_duplicate_names(tmp_path):
    write_task(tmp_path / "suite" / "b", DOCS, QUERIES, "q1\td1\t1\n")
    write_task(tmp_path / "suite" / "a", DOCS, QUERIES, "q2\td2\t1\n")
    assert [t.name for t in load_suite(str(tmp_path / "suite"))] == ["a", "b"]
    assert [t.name for t in load_suite(str(tmp_path / "suite" / "b"))] == ["b"]
    write_task(tmp_path / "other" / "a", DOCS, QUERIES, "q1\td1\t1\n")
    with pytest.raises(ERAError, match="duplicate task name 'a'"):
        load_suite([str(tmp_path / "suite" / "a"), str(tmp_path / "other" / "a")])
    with pytest.raises(ERAError, match="neither a task directory"):
        load_suite(str(tmp_path / "suite" / "a" / "qrels"))


# -- builtin:stdlib-code ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stdlib_task() -> RetrievalTask:
    return load_task("builtin:stdlib-code")


def test_stdlib_code_size_and_shape(stdlib_task):
    task = stdlib_task
    assert 1000 <= task.corpus.num_rows <= 3000 and task.queries.num_rows == task.corpus.num_rows
    assert (task.name, task.domain, task.instruction) == ("stdlib-code", "code", STDLIB_CODE_INSTRUCTION)
    assert (
        all(docs == {qid: 1} for qid, docs in task.qrels.items())
        and len(task.judged_query_ids()) == task.queries.num_rows
    )
    summaries = task.query_texts(task.query_ids())
    assert all(MIN_SUMMARY_WORDS <= len(s.split()) <= MAX_SUMMARY_WORDS for s in summaries)
    assert len({s.lower() for s in summaries}) == len(summaries) and len(set(task.document_texts())) == len(summaries)
    assert not any(part.startswith("_") for qid in task.query_ids() for part in qid.split("."))
    assert task.revision.startswith("python-3.")


def test_stdlib_code_sample_pair(stdlib_task):
    qid = "json.decoder.JSONDecoder.decode"
    [query] = stdlib_task.query_texts([qid])
    doc = stdlib_task.document_texts()[stdlib_task.document_ids().index(qid)]
    assert query.startswith("Return the Python representation of ``s``")
    assert doc.startswith("def decode(self, s") and "raw_decode" in doc and "Python representation" not in doc


def test_stdlib_code_docstrings_really_removed(stdlib_task):
    for code in stdlib_task.document_texts():
        node = ast.parse(code).body[0]
        assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and ast.get_docstring(node) is None


def test_stdlib_code_deterministic_whatever_the_file_order():
    files = stdlib_files()[::10]
    first = build_stdlib_code_task(files=files, max_functions=50)
    again = build_stdlib_code_task(files=list(reversed(files)), max_functions=50)
    assert first.corpus.num_rows == 50 and first.meta["candidates"] > 50
    assert first.document_texts() == again.document_texts() and first.query_ids() == again.query_ids()
    assert first.revision == again.revision


def test_no_stray_warnings_on_clean_data(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_task(str(write_task(tmp_path / "t", DOCS, QUERIES, "q1\td1\t1\n")))
