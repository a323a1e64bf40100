"""The one strict YAML reader: every error with its position, all at once; PyYAML kept apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rmm_common.errors import ConfigError
from rmm_common.yamlnodes import Section, Where, compose, mapping, string

ROOT = Path(__file__).resolve().parents[2]


def test_mapping_reports_every_bad_key_with_its_position() -> None:
    where = Where("f.yaml")
    root = compose("name: a\nnmae: b\nname: c\n", where)
    assert root is not None
    items = mapping(root, where, "top", ("name", "size"), ("size",))
    assert items is not None and set(items) == {"name"}
    assert where.errors == [
        "f.yaml:2:1: top: unknown key 'nmae' (allowed keys: name, size)",
        "f.yaml:3:1: top: duplicate key 'name' (keep one)",
        "f.yaml:1:1: top: missing required key 'size'",
    ]


def test_section_reports_unread_keys_and_bad_values_together() -> None:
    where = Where("n.yaml")
    section = Section(where, compose("count: many\nflag: 3\ncolour: red\n", where), "cfg")
    assert section.integer("count", 1) == 1
    assert section.flag("flag", False) is False
    section.value_node("color")
    section.finish()
    assert where.errors == [
        "n.yaml:1:8: cfg: count must be a whole number",
        "n.yaml:2:7: cfg: flag must be true or false",
        "n.yaml:3:1: cfg: unknown key 'colour'; did you mean 'color'? (known keys: color, count,"
        " flag)",
    ]


def test_syntax_errors_and_raising_name_the_position() -> None:
    where = Where("bad.yaml")
    assert compose("a: 1\n  b: [\n", where) is None
    assert len(where.errors) == 1 and where.errors[0].startswith("bad.yaml:2:")
    assert "not valid YAML" in where.errors[0]
    node = compose("x: ''\n", Where("ok.yaml"))
    assert node is not None
    assert string(node.value[0][1], where, "x", "x") is None
    with pytest.raises(ConfigError) as caught:
        where.raise_errors(ConfigError)
    second = str(caught.value).splitlines()[1]
    assert second == "bad.yaml:1:4: x: x must be a non-empty string, got ''"
    Where("clean.yaml").raise_errors(ConfigError)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_pyyaml_stays_out_of_the_cli_install() -> None:
    # `msp-rmm[cli]` installs no PyYAML: only this module of rmm_common may import it, and the
    # CLI must not import this module (policy validate/test import the server, which has it).
    in_common = {
        path.name
        for path in (ROOT / "rmm_common").glob("*.py")
        if {"yaml", "rmm_common.yamlnodes"} & _imports(path)
    }
    assert in_common == {"yamlnodes.py"}
    in_cli = [
        path.name
        for path in (ROOT / "rmm_cli").rglob("*.py")
        if {"yaml", "rmm_common.yamlnodes"} & _imports(path)
    ]
    assert in_cli == []
