"""shown(): agent-supplied text in a rich table is shown as text, never read as markup."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from rmm_cli.output import shown


def rendered(cell: str) -> str:
    table = Table("FIELD", "VALUE")
    table.add_row("hostname", cell)
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(table)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


@pytest.mark.parametrize(
    "hostile",
    ["x[/]", "web-01[dim][/dim]", "[link=https://evil.example]web-01[/link]", "a\x1b[2Jb\x1b]8;;x"],
)
def test_markup_and_terminal_escapes_in_agent_text_are_shown_literally(hostile: str) -> None:
    out = rendered(shown(hostile))
    assert "\x1b" not in out
    visible = hostile.replace("\x1b", "\\x1b")
    assert visible in out or repr(hostile)[1:-1] in out


def test_the_unescaped_text_would_have_broken_the_table() -> None:
    # What shown() prevents: rich reads a closing tag in a hostname as markup and fails.
    with pytest.raises(Exception, match="closing tag"):
        rendered("x[/]")
