"""`rmm run --library NAME --param KEY=VALUE`: parsed, sent, and refused where it means nothing."""

from __future__ import annotations

import pytest

from rmm_cli.client import CliError
from rmm_cli.run import build_script, parse_params
from rmm_proto import operator_pb2
from tests.rmm_cli.fakes import Fake, S, events, info, install, invoke


def test_params_are_sent_with_the_library_name(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake({"RunCommand": events([info("web-01", S.COMMAND_SUCCEEDED, stdout="ok\n")])})
    install(monkeypatch, fake)
    result = invoke(
        "run", "-t", "all", "--library", "disk-usage", "--param", "path=/var/log",
        "--param", "empty=", "--param", "eq=a=b",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    request: operator_pb2.RunCommandRequest = fake.request("RunCommand")
    assert request.run_script.library_name == "disk-usage"
    assert dict(request.run_script.params) == {"path": "/var/log", "empty": "", "eq": "a=b"}
    assert not request.run_script.env and not request.run_script.args


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (("path",), "--param 'path': write NAME=VALUE (e.g. --param path=/var/log)"),
        (("=x",), "--param '=x': write NAME=VALUE"),
        (("a=1", "a=2"), "--param a is given twice; give it once"),
    ],
)
def test_a_malformed_param_is_a_usage_error(pairs: tuple[str, ...], message: str) -> None:
    with pytest.raises(CliError) as caught:
        parse_params(pairs)
    assert caught.value.exit_code == 2 and message in caught.value.message


def test_params_are_for_library_scripts_only() -> None:
    with pytest.raises(CliError) as caught:
        build_script(None, None, "uptime", None, [], {}, "", {"a": "b"})
    assert caught.value.exit_code == 2
    assert "--param is for library scripts" in caught.value.message
    message = build_script(None, "restart-service", None, None, [], {}, "", {"name": "nginx"})
    assert dict(message.params) == {"name": "nginx"} and message.library_name == "restart-service"
