"""Hostile topology files: hypothesis-generated YAML (wrong types, huge numbers, unicode, deep
nesting, duplicate keys, anchors and alias bombs, random text) either loads or raises a
``TopologyError`` naming the file, the line and (for a field) the field - never another
exception, and in bounded time."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.errors import TopologyError
from controller.topology.files import topology_file
from controller.topology.loader import load_topology
from controller.topology.model import Topology

BASE: dict[str, Any] = yaml.safe_load(topology_file("diamond").read_text())
SOURCE = "fuzz.yaml"
LOAD_BOUND_S = 5.0

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=2**200),
    st.floats(), st.just(1e308), st.just(-1e308), st.text(max_size=30),
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF,
                                   blacklist_categories=("Cs",)), max_size=10),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def _deep(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def mutated_documents(draw: st.DrawFn) -> str:
    """The diamond with one to three fields replaced (or removed, or added), dumped."""
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        how = draw(st.sampled_from(("value", "deep", "drop", "extra")))
        if how == "drop" and isinstance(parent, dict):
            del parent[path[-1]]
        elif how == "extra" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(VALUES)
        else:
            parent[path[-1]] = _deep(draw(st.integers(40, 80))) if how == "deep" \
                else draw(VALUES)
    return yaml.safe_dump(doc, allow_unicode=draw(st.booleans()), sort_keys=False)


@st.composite
def textual_attacks(draw: st.DrawFn) -> str:
    base = topology_file("diamond").read_text()
    kind = draw(st.sampled_from(("dup", "bomb", "recursive", "merge", "cut", "text", "tag")))
    if kind == "dup":
        return base.replace("name: diamond", "name: diamond\nname: again", 1)
    if kind == "bomb":  # billion laughs: 9 levels of 9 references
        n = draw(st.integers(5, 9))
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * n)}]" for i in range(1, 10)]
        return "\n".join(lines) + "\n" + base
    if kind == "recursive":
        return base.replace("nodes:\n", "nodes: &n\n  - *n\n", 1)
    if kind == "merge":
        return base.replace("  - {name: s1}", "  - {<<: {name: s1}}", 1)
    if kind == "cut":
        return base[:draw(st.integers(0, len(base)))]
    if kind == "tag":
        return base.replace("name: diamond", "name: !!python/object:os.system diamond", 1)
    return draw(st.text(max_size=200))


FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _load(tmp: Path, text: str) -> Topology | TopologyError:
    path = tmp / SOURCE
    path.write_text(text, encoding="utf-8")
    t0 = time.monotonic()
    try:
        return load_topology(path)
    except TopologyError as exc:
        return exc
    finally:
        assert time.monotonic() - t0 < LOAD_BOUND_S, text[:300]


def _check(result: Topology | TopologyError, tmp: Path) -> None:
    if isinstance(result, Topology):
        return
    assert result.source == str(tmp / SOURCE)
    assert result.line is not None and result.line >= 1, str(result)
    assert str(result).startswith(f"{tmp / SOURCE}:{result.line}: "), str(result)


@FUZZ
@given(text=mutated_documents())
def test_mutated_fields_load_or_name_file_line_and_field(tmp_path_factory: Any,
                                                         text: str) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    result = _load(tmp, text)
    _check(result, tmp)
    if isinstance(result, TopologyError) and text.strip():
        assert result.field, str(result)


@FUZZ
@given(text=textual_attacks())
def test_textual_attacks_load_or_name_file_and_line(tmp_path_factory: Any, text: str) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    _check(_load(tmp, text), tmp)


@pytest.mark.parametrize("text", [
    "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)),
    "nodes: &n\n  - *n\n",
])
def test_alias_bombs_are_refused_at_once(tmp_path: Path, text: str) -> None:
    result = _load(tmp_path, text)
    assert isinstance(result, TopologyError) and result.line is not None, result
