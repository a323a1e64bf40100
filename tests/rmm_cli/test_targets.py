"""Selectors, outcomes, the output head, JSON shape and exit status: no server needed."""

from __future__ import annotations

import json

import pytest

from rmm_cli.client import CliError
from rmm_cli.targets import (
    Outcome,
    RunOptions,
    SelectorError,
    failure_summary,
    follow,
    head,
    parse_selector,
    printable,
    sort_outcomes,
)
from rmm_proto import commands_pb2, operator_pb2
from tests.rmm_cli.fakes import S, events, info

# ---- selectors ----


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("all", operator_pb2.TargetSelector(all=True)),
        ("ALL", operator_pb2.TargetSelector(all=True)),
        ("client=acme,site=hq", operator_pb2.TargetSelector(client="acme", site="hq")),
        (" client = acme , tag=web ", operator_pb2.TargetSelector(client="acme", tag="web")),
        ("os=Linux,status=ONLINE", operator_pb2.TargetSelector(os="linux", status="online")),
        ("os=windows", operator_pb2.TargetSelector(os="windows")),
        ("os=macos,status=offline", operator_pb2.TargetSelector(os="macos", status="offline")),
        ("agent=a1,agent=B2", operator_pb2.TargetSelector(agents=["agent=a1", "agent=b2"])),
        # A bare word of hex digits is an id (prefix), any other a hostname; each is sent as an
        # explicit term, so the server never has to guess.
        ("web-01,web-02", operator_pb2.TargetSelector(agents=["host=web-01", "host=web-02"])),
        ("web-01,host=web-01", operator_pb2.TargetSelector(agents=["host=web-01"])),
        ("dc01", operator_pb2.TargetSelector(agents=["agent=dc01"])),
        ("host=dc01", operator_pb2.TargetSelector(agents=["host=dc01"])),
        ("HOST=DC01,client=acme", operator_pb2.TargetSelector(agents=["host=DC01"], client="acme")),
        ("0A1B2C,agent=0a1b2c", operator_pb2.TargetSelector(agents=["agent=0a1b2c"])),
        ("f" * 32, operator_pb2.TargetSelector(agents=["agent=" + "f" * 32])),
        ("f" * 33, operator_pb2.TargetSelector(agents=["host=" + "f" * 33])),  # no id is so long
        ("all,status=online", operator_pb2.TargetSelector(all=True, status="online")),
        ("client=acme,client=acme", operator_pb2.TargetSelector(client="acme")),
        ("client=a=b", operator_pb2.TargetSelector(client="a=b")),
    ],
)
def test_good_selectors(text: str, expected: operator_pb2.TargetSelector) -> None:
    assert parse_selector(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the target is empty"),
        ("   ", "the target is empty"),
        ("client=acme,,site=hq", "has an empty term"),
        ("client=acme,", "has an empty term"),
        ("colour=blue", "unknown key 'colour' in target term 'colour=blue'; keys: all, agent,"),
        ("os=solaris", "os must be one of linux, windows, macos"),
        ("status=up", "status must be one of online, offline"),
        ("client=", "target term 'client=' has no value: write client=VALUE"),
        ("agent=", "has no value"),
        ("host=", "has no value"),
        (
            "agent=web-01",
            "agent= takes an agent id or the start of one (1-32 hex digits); for a "
            "hostname write host=web-01",
        ),
        ("all=yes", "write all on its own"),
        ("client=a,client=b", "target gives client twice (client=a and client=b)"),
        ("tag=x,tag=y", "gives tag twice"),
    ],
)
def test_bad_selectors_name_the_term(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    assert message in str(caught.value)


# ---- outcomes: every status ----

ALL_STATUSES = [v for v in commands_pb2.CommandStatus.values()]


@pytest.mark.parametrize(
    ("status", "queue_offline", "ok", "reason"),
    [
        (S.COMMAND_SUCCEEDED, False, True, None),
        (S.COMMAND_QUEUED, True, True, None),
        (S.COMMAND_QUEUED, False, False, "offline, queued"),
        (S.COMMAND_FAILED, False, False, "failed: boom"),
        (S.COMMAND_TIMED_OUT, False, False, "timed out: boom"),
        (S.COMMAND_REFUSED, False, False, "refused: boom"),
        (S.COMMAND_DECLINED, False, False, "declined by the logged-in user: boom"),
        (S.COMMAND_EXPIRED, False, False, "expired before it reached the agent: boom"),
        (S.COMMAND_CANCELLED, False, False, "boom"),
        (S.COMMAND_SENT, False, False, "sent, boom"),
        (S.COMMAND_RUNNING, False, False, "running, boom"),
        (S.COMMAND_STATUS_UNSPECIFIED, False, False, "no outcome: boom"),
    ],
)
def test_every_status_maps_to_ok_and_a_reason(
    status: int, queue_offline: bool, ok: bool, reason: str | None
) -> None:
    outcome = Outcome(info("h", status, exit_code=None, error="boom"), queue_offline)
    assert outcome.ok is ok
    if reason is not None:
        assert outcome.reason().startswith(reason), outcome.reason()
        assert failure_summary([outcome]).startswith("1 of 1 agent failed: h [h-0123456789] (")
    else:
        assert failure_summary([outcome]) == ""


def test_every_status_is_covered() -> None:
    # A new CommandStatus in the proto must get a decision above, not fall through silently.
    names = {commands_pb2.CommandStatus.Name(v) for v in ALL_STATUSES}
    assert len(names) == 11


def test_script_exit_code_is_the_reason_and_stderr_the_head() -> None:
    outcome = Outcome(info("web-07", S.COMMAND_FAILED, exit_code=3, stderr="disk full\n"))
    assert (outcome.ok, outcome.reason(), outcome.head()) == (False, "exit 3", "disk full")
    signalled = Outcome(info("web-08", S.COMMAND_FAILED, exit_code=-9))
    assert signalled.reason() == "killed by signal 9"
    no_output = Outcome(info("web-09", S.COMMAND_FAILED, exit_code=2))
    assert no_output.head() == "exit 2"
    offline = Outcome(info("web-10", S.COMMAND_CANCELLED, exit_code=None, error="offline for 5m"))
    assert (offline.reason(), offline.head()) == ("offline for 5m", "offline for 5m")


def test_failures_come_first_and_are_named() -> None:
    outcomes = [Outcome(info(f"web-{n:02}", stdout=f"ok {n}")) for n in range(1, 21)]
    outcomes[6] = Outcome(info("web-07", S.COMMAND_FAILED, exit_code=3))
    ordered = sort_outcomes(outcomes)
    assert ordered[0].info.hostname == "web-07"
    assert [o.info.hostname for o in ordered[1:3]] == ["web-01", "web-02"]
    assert failure_summary(outcomes) == "1 of 20 agents failed: web-07 [web-07-01234] (exit 3)"


def test_many_failures_are_capped() -> None:
    outcomes = [Outcome(info(f"h{n:02}", S.COMMAND_FAILED, exit_code=1)) for n in range(15)]
    summary = failure_summary(outcomes)
    assert summary.startswith("15 of 15 agents failed: h00 [h00-01234567] (exit 1), h01 [")
    assert summary.endswith("h09 [h09-01234567] (exit 1), and 5 more")


# ---- the output head ----


def test_head_keeps_the_first_non_blank_lines_and_says_how_many_more() -> None:
    assert head("\n\nfirst\n\nsecond\nthird\nfourth\n") == "first\nsecond … (+2 lines)"
    assert head("only\n") == "only"
    assert head("") == ""
    assert head("a\r\nb\r\n") == "a\nb"


def test_head_cuts_long_lines() -> None:
    line = "x" * 500
    cut = head(line, width=100)
    assert len(cut) == 100 and cut.endswith("…")


def test_head_is_safe_for_a_terminal() -> None:
    # Replacement characters (from bytes that were not UTF-8) pass; escapes and controls do not.
    text = "caf\ufffd \x1b[31mred\x1b[0m \x1b]0;title\x07bell\x07 nul\x00 \ud800 tab\tend"
    shown = head(text)
    assert "\x1b" not in shown and "\x07" not in shown and "\x00" not in shown
    assert "caf\ufffd red " in shown and "tab    end" in shown
    shown.encode("utf-8")  # a lone surrogate would make this raise
    assert printable("keep\nnewlines") == "keep\nnewlines"
    # Bidi overrides, isolates and marks, zero-width characters and BOMs (rmm_common.text's
    # class) cannot make output read as something else; a line separator is a line break.
    hostile = "ok\u202egnp.exe \u2066x\u2069 a\u200bb \ufeffc \u200ed one\u2028two\u2029three"
    assert printable(hostile) == (
        "ok\ufffdgnp.exe \ufffdx\ufffd a\ufffdb \ufffdc \ufffdd one\ntwo\nthree"
    )
    assert head(hostile, lines=5).splitlines()[1:] == ["two", "three"]


# ---- JSON ----


def test_json_has_full_output_and_every_field() -> None:
    long = "\n".join(f"line {n}" for n in range(50))
    data = Outcome(
        info("web-01", S.COMMAND_FAILED, exit_code=3, stdout=long, stderr="bad")
    ).to_json()
    assert data["stdout"] == long and data["stderr"] == "bad"
    assert data["status"] == "failed" and data["ok"] is False
    assert data["exit_code"] == 3 and data["command_id"] == "cmd-web-01"
    assert data["duration_seconds"] == pytest.approx(1.25)
    assert data["hostname"] == "web-01" and data["error"] is None
    assert data["result"]["script"]["exit_code"] == 3
    json.dumps(data, allow_nan=False)


def test_json_of_a_non_script_result_and_a_pulled_file_leaves_the_bytes_out() -> None:
    result = commands_pb2.CommandResult(
        file=commands_pb2.FileResult(path="/etc/x", size=3, sha256="ab", data=b"abc")
    )
    data = Outcome(info("h", result=result)).to_json()
    assert data["exit_code"] is None and data["stdout"] is None
    assert data["result"] == {"file": {"path": "/etc/x", "size": 3, "sha256": "ab"}}
    listed = commands_pb2.CommandResult(
        processes=commands_pb2.ProcessList(
            processes=[commands_pb2.ProcessInfo(pid=7, name="sshd", memory_rss_bytes=2**40)]
        )
    )
    processes = Outcome(info("h", result=listed)).to_json()["result"]["processes"]["processes"]
    assert processes[0]["pid"] == 7 and processes[0]["memory_rss_bytes"] == 2**40
    assert processes[0]["cmdline"] == ""  # every field, also empty ones
    cancelled = info("h", S.COMMAND_CANCELLED, exit_code=None, error="offline")
    cancelled.sent_at = cancelled.finished_at = 0
    offline = Outcome(cancelled).to_json()
    assert offline["result"] is None and offline["duration_seconds"] is None
    assert offline["error"] == "offline"


# ---- following the stream ----


def test_follow_collects_outcomes_and_reports_missing_ones() -> None:
    outcomes = [info("a"), info("b")]
    stream = events(outcomes)
    stream.append(operator_pb2.RunEvent(outcome=outcomes[0]))  # a repeat counts once
    del stream[2]  # b's outcome never comes
    run = follow(stream, RunOptions(), show_progress=False)
    assert run.run_id == "run-1" and len(run.targets) == 2
    assert [o.info.hostname for o in run.outcomes] == ["a", "b"]
    missing = run.outcomes[1]
    assert not missing.ok and "no outcome" in missing.reason() and "cmd-b" in missing.reason()


def test_follow_with_a_progress_bar_reaches_the_end() -> None:
    run = follow(events([info("a"), info("b", S.COMMAND_FAILED)]), RunOptions(), show_progress=True)
    assert [o.ok for o in run.outcomes] == [True, False]


def test_a_stream_without_started_is_an_error() -> None:
    with pytest.raises(CliError, match="without saying which agents"):
        follow([], RunOptions(), show_progress=False)


def test_detached_run_has_targets_and_no_outcomes() -> None:
    run = follow(events([info("a")], detach=True), RunOptions(detach=True), show_progress=False)
    assert run.run_id == "run-1" and run.outcomes == [] and run.targets[0].hostname == "a"


def test_agents_the_server_did_not_reach_have_no_command_id_and_each_counts() -> None:
    # The server sends an offline agent's outcome without a command id; each is still one agent.
    offline = [info(name, S.COMMAND_CANCELLED, exit_code=None, error="offline") for name in "ab"]
    for outcome in offline:
        outcome.id = ""
    stream = events([info("c"), *offline], online=False)
    run = follow(stream, RunOptions(), show_progress=False)
    assert sorted(o.info.hostname for o in run.outcomes) == ["a", "b", "c"]
    assert failure_summary(run.outcomes) == (
        "2 of 3 agents failed: a [a-0123456789] (offline), b [b-0123456789] (offline)"
    )
    del stream[-1]  # b's outcome never comes: it is reported, not lost
    run = follow(stream, RunOptions(), show_progress=False)
    missing = next(o for o in run.outcomes if o.info.hostname == "b")
    assert "no outcome" in missing.reason() and "rmm commands list --run run-1" in missing.reason()


def test_agents_sharing_a_hostname_are_told_apart_by_id() -> None:
    clones = [Outcome(info("img", agent_id=f"{n}" * 16)) for n in range(3)]
    clones[1] = Outcome(info("img", S.COMMAND_FAILED, exit_code=3, agent_id="1" * 16))
    clones.append(Outcome(info("", S.COMMAND_FAILED, exit_code=4, agent_id="f" * 16)))
    assert failure_summary(clones) == (
        "2 of 4 agents failed: ffffffffffff (exit 4), img [111111111111] (exit 3)"
    )
