"""Fuzz the policy loader: any file is loaded, or refused with PolicyError naming file and reason.

Random text, random YAML structures, and the shipped policies with one value replaced, one key
added or removed, or a few characters changed, all go through load_policy_dir as the server's
start and reload do. No other exception type may come out.
"""

from __future__ import annotations

import copy
import itertools
import re
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from rmm_common.errors import PolicyError
from rmm_server.policy import PolicySet, load_policy_dir
from rmm_server.policy.model import AgentContext, SeriesSample
from tests.fuzz import FUZZ, examples

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p for p in (ROOT / "policies").glob("*.yaml"))
_dirs = itertools.count()
# YAML that constructs into something unusual: tags, aliases, complex keys, escapes.
SNIPPETS = [" !!int x", " !foo", " &a", " *a", "{[1]: 2}", ' "\\ud800"', "🙂", " !!binary", "<<: "]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["10m", "0s", "-1s", "99999999999d", "cpu_usage_ratio > 0.5", "{{ x }}"]),
    st.sampled_from(["rmm/v1", "AlertPolicy", "critical", "L2", "true", "all", "server"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=12), scalars), inner, max_size=4),
    ),
    max_leaves=12,
)


def load_one(base: Path, files: Mapping[str, str | bytes]) -> PolicySet | None:
    """Write `files` to a fresh directory and load it; return the set, or None when refused."""
    directory = base / f"case{next(_dirs)}"
    directory.mkdir()
    for name, content in files.items():
        path = directory / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    try:
        policies = load_policy_dir(directory)
    except PolicyError as error:
        event("refused")
        assert error.errors, "a refusal must list its problems"
        for problem in error.errors:
            named = [str(directory / name) for name in files]
            assert problem.startswith(tuple(named)), problem  # names the file
            assert len(problem) > len(str(directory)) + 5, problem  # and a reason
        return None
    finally:
        shutil.rmtree(directory)
    # A set that loaded must evaluate without raising, whatever its rules say.
    event("loaded")
    policies.rules_for(AGENT)
    policies.evaluate(AGENT, SAMPLES)
    return policies


AGENT = AgentContext(
    agent_id="a1",
    hostname="h",
    client="acme",
    site="hq",
    tags=frozenset({"server"}),
    os="linux",
    interval_seconds=30,
    seconds_since_report=5.0,
    info={},
)
SAMPLES = [
    SeriesSample("cpu_usage_ratio", {}, 0.95),
    SeriesSample("memory_usage_ratio", {}, float("nan")),
    SeriesSample("disk_usage_ratio", {"mountpoint": "/"}, 0.99),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("policies"))


def shipped_texts() -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in SHIPPED}


def test_the_shipped_policies_load() -> None:
    policies = load_policy_dir(ROOT / "policies")
    assert policies.rules_for(AGENT)
    policies.evaluate(AGENT, SAMPLES)


RULE = """apiVersion: rmm/v1
kind: AlertPolicy
metadata: {name: t}
scope: {all: true}
rules:
  - name: R
    expr: "!params.names.all(n, process_running(n))"
    params: PARAMS
"""


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        # libyaml refuses the escape itself; PyYAML's Python parser makes it a lone surrogate.
        ('{names: "\\ud800"}', "invalid Unicode character escape|holds a lone UTF-16 surrogate"),
        ("{names: 1" + "0" * 400 + "}", "params.names must be a finite number"),
        ("{[1]: 2}", "YAML cannot read this value: found unhashable key"),
        ("{names: &a [x, *a]}", "YAML cannot read this value: found unconstructable recursive"),
        ("{names: !!int abc}", "YAML cannot read this value: ValueError: invalid literal"),
        ("{names: !custom x}", "could not determine a constructor for the tag '!custom'"),
    ],
)
def test_values_yaml_or_cel_cannot_take_are_refused_by_position(
    tmp_path: Path, params: str, reason: str
) -> None:
    """Found by the fuzzing: each of these raised ConstructorError, ValueError or
    OverflowError out of the loader (a server start or reload died on a traceback)."""
    (tmp_path / "p.yaml").write_text(RULE.replace("PARAMS", params), encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy_dir(tmp_path)
    assert any(
        e.startswith(f"{tmp_path / 'p.yaml'}:8:") and re.search(reason, e)
        for e in caught.value.errors
    ), caught.value.errors


def test_a_param_past_the_bmp_loads_and_matches(tmp_path: Path) -> None:
    """Found by the fuzzing: a param with an emoji was rendered as a JSON surrogate pair,
    which CEL refuses: the loader raised ValueError."""
    (tmp_path / "p.yaml").write_text(
        RULE.replace("PARAMS", '{names: ["svc-🙂"]}'), encoding="utf-8"
    )
    policies = load_policy_dir(tmp_path)
    running = replace(AGENT, info={"processes": {"names": ["svc-🙂"]}})
    stopped = replace(AGENT, info={"processes": {"names": ["other"]}})
    assert [c.active for c in policies.evaluate(running, SAMPLES)] == [False]
    assert [c.active for c in policies.evaluate(stopped, SAMPLES)] == [True]


@settings(FUZZ, max_examples=examples(150))
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_random_text_is_loaded_or_refused_by_file(base: Path, content: str | bytes) -> None:
    load_one(base, {"random.yaml": content})


@settings(FUZZ, max_examples=examples(150))
@given(values)
def test_random_yaml_structures_are_loaded_or_refused_by_file(base: Path, document: Any) -> None:
    load_one(base, {"random.yaml": yaml.safe_dump(document, allow_unicode=True)})


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a loaded YAML document."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def mutated_shipped(draw: st.DrawFn) -> dict[str, str]:
    """The shipped policies with one file changed structurally or as text."""
    texts = shipped_texts()
    name = draw(st.sampled_from(sorted(texts)))
    if draw(st.booleans()):
        text = texts[name]
        for _ in range(draw(st.integers(1, 3))):
            where = draw(st.integers(0, len(text)))
            cut = draw(st.integers(0, 5))
            insert = draw(st.one_of(st.text(max_size=5), st.sampled_from(SNIPPETS)))
            text = text[:where] + insert + text[where + cut :]
        texts[name] = text
        return texts
    docs = list(yaml.safe_load_all(texts[name]))
    index = draw(st.integers(0, len(docs) - 1))
    doc = copy.deepcopy(docs[index])
    path = draw(st.sampled_from(_paths(doc)))
    action = draw(st.sampled_from(["replace", "delete", "add key"]))
    if not path:
        doc = draw(values)
    else:
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if action == "replace":
            parent[last] = draw(values)
        elif action == "delete":
            del parent[last]
        elif isinstance(parent[last], dict):
            parent[last][draw(st.text(max_size=12))] = draw(values)
        else:
            parent[last] = draw(values)
    docs[index] = doc
    texts[name] = yaml.safe_dump_all(docs, allow_unicode=True)
    return texts


@settings(FUZZ, max_examples=examples(150))
@given(mutated_shipped())
def test_mutated_shipped_policies_are_loaded_or_refused_by_file(
    base: Path, files: dict[str, str]
) -> None:
    load_one(base, files)
