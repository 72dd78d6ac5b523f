"""Security properties that hold for the whole package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "era_hf"
SPACE = Path(__file__).resolve().parents[1] / "spaces"
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
    for path in PACKAGE.rglob("*.py"):
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
