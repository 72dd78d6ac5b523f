"""Security properties that hold for the whole package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "era_hf"
SPACE = Path(__file__).resolve().parents[1] / "spaces"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# Anything that can execute code while reading a file: pickle and its users.
UNSAFE = re.compile(r"torch\.load|torch\.save|\bimport (pickle|cPickle|dill|cloudpickle)\b|"
                    r"\bfrom (pickle|dill|cloudpickle) import|pickle\.loads?\(|joblib\.load|"
                    r"allow_pickle\s*=\s*True|(?<![.\w])eval\(|(?<![.\w])exec\(")


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")) + sorted(SPACE.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_pickle_or_eval_anywhere(path):
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        code = line.split("#", 1)[0]
        assert not UNSAFE.search(code), f"{path}:{number}: {line.strip()}"


def test_numpy_loads_forbid_pickle():
    for path in [*PACKAGE.rglob("*.py"), *SPACE.rglob("*.py"), *BENCHMARKS.rglob("*.py")]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if "np.load(" in line:
                assert "allow_pickle=False" in line, f"{path}:{number}: {line.strip()}"


@pytest.mark.parametrize("line,unsafe", [
    ("state = torch.load(path)", True), ("import pickle", True), ("pickle.loads(blob)", True),
    ("np.load(p, allow_pickle=True)", True), ("eval(text)", True),
    ("model.eval()", False), ("np.load(p, allow_pickle=False)", False), ("safetensors.load_file(p)", False),
])
def test_the_scanner_itself(line, unsafe):
    assert bool(UNSAFE.search(line)) is unsafe


# ---------------------------------------------------------------------- every write goes through a temp path
# Calls that write a file. Each must write to a temp path (era_hf/atomic.py's atomic_path / atomic_open, or a
# mkdtemp folder renamed into place): its target or receiver is named tmp*. era_hf's own savers (an index's or
# the checkpoints' .save, an ERAModel's .save_pretrained) are scanned where they are defined.
WRITERS = {"write_text", "write_bytes", "save_file", "save", "savefig", "write_index", "save_pretrained", "copyfile",
           "copy2", "copytree", "to_json_file", "save_to_disk"}
OWN_SAVERS = {"index", "ckpts", "model"}  # DocumentIndex, Checkpoints, ERAModel (test_atomic.py)
# Writes inside a folder that its caller renames into place as a whole (function -> why).
TEMP_FOLDER_WRITERS = {
    ("sentence_transformers_export.py", "save"): "sentence-transformers saves its modules into export's temp folder",
    ("sentence_transformers_export.py", "_portable_class_refs"): "edits JSON files inside export's temp folder",
}


def _write_calls(path: Path):
    import ast

    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name == "open":
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"),
                                                                 None)
            if not (isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax")):
                continue
        elif name not in WRITERS or not isinstance(func, ast.Attribute) and name == "save":
            continue  # a bare save(...) is safetensors' save to bytes or a local closure over Checkpoints.save
        receiver = ast.get_source_segment(source, func.value) if isinstance(func, ast.Attribute) else ""
        if name in ("save", "save_pretrained") and receiver in OWN_SAVERS:
            continue
        scope = node
        while scope in parents and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
            scope = parents[scope]
        target = " ".join([receiver] + [ast.get_source_segment(source, a) for a in node.args[:2]])
        yield node.lineno, getattr(scope, "name", "<module>"), target


def test_every_file_write_goes_through_a_temp_path():
    found_exempt = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "atomic.py":
            continue
        for line, function, target in _write_calls(path):
            if (path.name, function) in TEMP_FOLDER_WRITERS:
                found_exempt.add((path.name, function))
                continue
            assert "tmp" in target.lower(), f"{path}:{line}: a write to {target!r} that is not to a temp path"
    assert found_exempt == set(TEMP_FOLDER_WRITERS)  # no stale exemption


def test_the_write_scanner_itself(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f(p, tmp):\n    p.write_text('x')\n    open(p, 'w')\n    open(p)\n    tmp.write_bytes(b'')\n"
                      "    np.save(p, a)\n    index.save(p)\n    encoder.save_pretrained(p)\n")
    assert [(line, target.split()[0]) for line, _, target in _write_calls(sample)] == [
        (2, "p"), (3, "p"), (5, "tmp"), (6, "np"), (8, "encoder")]


# What a saved model carries as remote code (the README's "What trust_remote_code=True runs"; the files a push
# uploads are checked in test_publishing.py).
REMOTE_CODE_FILES = ("configuration_era.py", "modeling_era.py", "heads.py", "text_encoding.py", "errors.py")


def test_remote_code_imports_only_what_the_readme_names():
    import ast

    allowed = {"torch", "numpy", "transformers", "safetensors", "tqdm", "peft", "__future__", "os", "json",
               "warnings", "typing", "pathlib", "shutil", "tempfile", "math", "re", "collections"}
    for name in REMOTE_CODE_FILES:
        tree = ast.parse((PACKAGE / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # a relative import must be one of the files that travel along
                    assert f"{node.module}.py" in REMOTE_CODE_FILES, f"{name}:{node.lineno}: .{node.module}"
                    continue
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"{name}:{node.lineno}: imports {sorted(roots - allowed)}"
