"""The README's Python examples run, and the values their comments claim are what they return.

A line ``expr  # literal`` in a ```python block claims that ``expr`` evaluates to ``literal``
(floats compared to 1e-9); every other line just has to run.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def _same(got: object, want: object) -> bool:
    if isinstance(want, float) or isinstance(got, float):
        return isinstance(got, (int, float)) and math.isclose(got, want, abs_tol=1e-9)  # type: ignore[arg-type]
    if isinstance(want, (list, tuple)):
        return (isinstance(got, (list, tuple)) and len(got) == len(want)
                and all(_same(g, w) for g, w in zip(got, want, strict=True)))
    if isinstance(want, dict):
        return (isinstance(got, dict) and got.keys() == want.keys()
                and all(_same(got[k], want[k]) for k in want))
    return got == want


def _claims(block: str) -> list[tuple[str, object]]:
    out = []
    for line in block.splitlines():
        code, sep, comment = line.partition("#")
        if not sep or not code.strip():
            continue
        try:
            want = ast.literal_eval(comment.strip())
        except (ValueError, SyntaxError):
            continue  # a prose comment, not a claimed value
        out.append((code.strip(), want))
    return out


def test_readme_has_python_examples() -> None:
    assert _python_blocks(), f"no ```python blocks in {README}"


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_example_runs_and_claims_hold(index: int) -> None:
    block = _python_blocks()[index]
    namespace: dict[str, object] = {}
    exec(compile(block, f"README.md python block {index}", "exec"), namespace)  # noqa: S102
    for expr, want in _claims(block):
        got = eval(expr, namespace)  # noqa: S307
        assert _same(got, want), f"README claims {expr} == {want!r}, got {got!r}"
