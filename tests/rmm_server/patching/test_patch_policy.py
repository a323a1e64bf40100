"""PatchPolicy documents: strict loading (file:line:col), layering, provenance, hot reload."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from rmm_agent.patching import base as agent_patching
from rmm_common.errors import ConfigError, PolicyError
from rmm_server.alerts.service import AlertService
from rmm_server.patching import model
from rmm_server.patching.windows import trigger_for
from rmm_server.policy import AgentContext, load_policy_dir, validate_path
from rmm_server.scripts import ScriptLibrary
from rmm_server.storage import open_store

ROOT = Path(__file__).resolve().parents[3]
HEAD = "apiVersion: rmm/v1\nkind: PatchPolicy\n"
AGENT_ID = "a1" * 16


def agent(
    tags: set[str] | None = None, client: str = "acme", site: str = "hq", agent_id: str = AGENT_ID
) -> AgentContext:
    return AgentContext(
        agent_id=agent_id,
        hostname=f"host-{agent_id[:4]}",
        client=client,
        site=site,
        tags=frozenset(tags or set()),
        os="linux",
        interval_seconds=60.0,
        seconds_since_report=10.0,
        info={},
    )


BASE = (
    HEAD
    + """metadata: {name: base}
scope: {all: true}
approval:
  - name: security
    classifications: [security]
  - name: bugfix
    classifications: [bugfix]
    min_age_days: 7
schedule:
  nth_weekday: {nth: 2, weekday: tuesday, offset_days: 3, time: "22:00"}
  duration: 4h
reboot: {mode: if-required, consent: ask}
"""
)


def errors_of(tmp_path: Path, text: str, name: str = "p.yaml") -> list[str]:
    (tmp_path / name).write_text(text)
    return validate_path(tmp_path)


def test_the_classification_lists_of_agent_and_server_are_the_same() -> None:
    # The server may not import the agent; this test may, and keeps the two lists equal.
    assert model.CLASSIFICATIONS == agent_patching.CLASSIFICATIONS
    assert {agent_patching.DRIVER, agent_patching.FIRMWARE} == model.DEVICE_CLASSIFICATIONS


def test_the_shipped_policy_loads_and_says_what_the_brief_promises() -> None:
    policies = load_policy_dir(ROOT / "policies")
    assert "patching" in policies.patches.policies
    pilot = policies.patches.settings_for(agent({"pilot"}))
    other = policies.patches.settings_for(agent())
    rules = {r.name: r for r in pilot.rules}
    assert rules["security"].min_age_seconds == 0
    assert {"security", "critical"} <= rules["security"].classifications
    assert rules["bugfix"].min_age_seconds == 7 * 86400
    # Nothing approves drivers, firmware, features or third-party software: by hand only.
    approved = set().union(*(r.classifications for r in pilot.rules))
    assert approved.isdisjoint({"driver", "firmware"})
    assert pilot.schedule is not None
    assert (pilot.schedule.nth, pilot.schedule.weekday, pilot.schedule.offset_days) == (
        2,
        "tuesday",
        3,
    )
    assert pilot.schedule.time_zone == "site"
    assert [r.name for r in pilot.rings] == ["pilot", "broad"]
    assert pilot.ring is not None and pilot.ring.name == "pilot"
    assert other.ring is not None and other.ring.name == "broad"
    assert (pilot.reboot.mode, pilot.reboot.consent) == ("if-required", "ask")


def test_layers_override_settings_and_rules_by_name_with_provenance(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BASE)
    (tmp_path / "b.yaml").write_text(
        HEAD
        + """metadata: {name: acme}
layer: client
scope: {clients: [acme]}
approval:
  - name: bugfix
    min_age_days: 14
    exclude: ["linux-image-*"]
  - name: security
    enabled: false
"""
    )
    (tmp_path / "c.yaml").write_text(
        HEAD
        + """metadata: {name: acme-hq}
layer: site
scope: {sites: [acme/hq]}
schedule:
  cron: "0 3 * * sat"
  duration: 2h
  time_zone: Europe/Paris
reboot: {mode: never}
"""
    )
    patches = load_policy_dir(tmp_path).patches
    hq = patches.settings_for(agent())
    assert [r.name for r in hq.rules] == ["bugfix"]  # security disabled by the client layer
    bugfix = hq.rules[0]
    assert bugfix.min_age_seconds == 14 * 86400
    assert [str(p) for p in bugfix.exclude] == ["linux-image-*"]
    assert bugfix.source == f"{tmp_path / 'a.yaml'}:8"  # the definition's place
    assert hq.schedule is not None and hq.schedule.cron == "0 3 * * sat"
    assert hq.schedule.time_zone == "Europe/Paris"
    # reboot merges key by key: the site set mode, the global layer's consent stays.
    assert (hq.reboot.mode, hq.reboot.consent) == ("never", "ask")
    mode = hq.set_by("reboot.mode")
    assert mode is not None and (mode.policy, mode.layer) == ("acme-hq", "site")
    consent = hq.set_by("reboot.consent")
    assert consent is not None and consent.source == f"{tmp_path / 'a.yaml'}:14"
    age = hq.set_by("approval.base/bugfix.min_age_days")
    assert age is not None and age.source == f"{tmp_path / 'b.yaml'}:7"
    # Another client keeps the global settings.
    other = patches.settings_for(agent(client="globex"))
    assert {r.name for r in other.rules} == {"security", "bugfix"}
    assert other.rules[1].min_age_seconds == 7 * 86400
    assert other.schedule is not None and other.schedule.nth == 2
    # explain lists every setting with who set it, the disabled rule too.
    rows = {name: (text, sources) for name, text, sources in patches.explain(agent())}
    assert rows["reboot.mode"][0] == "never"
    assert rows["reboot.mode"][1][0].source == f"{tmp_path / 'c.yaml'}:10"
    assert rows["approval.base/security"][0].startswith("disabled")
    assert rows["approval.base/bugfix"][0] == "approve bugfix after 14 days exclude linux-image-*"
    assert {p.policy for p in rows["approval.base/bugfix"][1]} == {"base", "acme"}
    assert rows["pre_install"] == ("-", [])


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        (BASE + "colour: blue\n", "15:1", "unknown key 'colour'"),
        (
            BASE.replace("    min_age_days: 7\n", "    min_age: 7\n"),
            "10:5",
            "unknown key 'min_age'",
        ),
        (
            BASE.replace("[security]", "[security, securty]"),
            "7:33",
            "unknown classification 'securty'",
        ),
        (
            BASE.replace(
                "    classifications: [bugfix]\n",
                '    classifications: [bugfix]\n    include: [{regex: "linux-(image"}]\n',
            ),
            "10:23",
            "bad regular expression",
        ),
        (
            BASE.replace(
                '  nth_weekday: {nth: 2, weekday: tuesday, offset_days: 3, time: "22:00"}\n',
                '  cron: "0 0 30 2 *"\n',
            ),
            "12:9",
            "never fires",
        ),
        (
            BASE.replace(
                '  nth_weekday: {nth: 2, weekday: tuesday, offset_days: 3, time: "22:00"}\n',
                '  cron: "0 0 * *"\n',
            ),
            "12:9",
            "schedule.cron",
        ),
        (BASE.replace("weekday: tuesday", "weekday: tusday"), "12:34", "'tusday' is unknown"),
        (
            BASE.replace(
                '  nth_weekday: {nth: 2, weekday: tuesday, offset_days: 3, time: "22:00"}\n',
                '  cron: "0 3 * * 8"\n',
            ),
            "12:9",
            "outside 0-7",
        ),
        (BASE.replace("nth: 2,", "nth: 6,"), "12:22", "nth must be 1 to 5"),
        (BASE.replace('"22:00"', '"25:00"'), "12:65", "not HH:MM"),
        (BASE.replace("duration: 4h", "duration: 0s"), "13:13", "must be over 0"),
        (
            BASE.replace("duration: 4h", "duration: 4h\n  time_zone: Mars/Base"),
            "14:14",
            "not a time zone",
        ),
        (BASE.replace("consent: ask", "consent: shout"), "14:38", "'shout' is unknown"),
        (BASE.replace("mode: if-required", "mode: sometimes"), "14:16", "'sometimes' is unknown"),
        (
            BASE.replace("[bugfix]", "[bugfix]\n    hardware_ids: [PCI\\VEN_8086]"),
            "10:19",
            "hardware_ids pin drivers and firmware only",
        ),
        (
            BASE.replace("[bugfix]", "[bugfix, driver]"),
            "9:22",
            "approved by rules of their own",
        ),
        (
            BASE.replace("[security]", "[security]\n    severities: [urgent]"),
            "8:18",
            "unknown severity",
        ),
        (
            BASE.replace("    classifications: [security]\n", ""),
            "6:5",
            "must list its classifications",
        ),
        (BASE + "rings: [{name: pilot}]\n", "15:9", "missing required key 'select'"),
        (BASE + "rings: [{name: pilot, select: {}}]\n", "15:31", "an empty scope is refused"),
        (BASE.replace("kind: PatchPolicy", "kind: PatchPolcy"), "2:7", "unsupported kind"),
        (
            BASE.replace("    min_age_days: 7\n", "    min_age_days: 7\n    include: [1]\n"),
            "11:15",
            "each entry of include must be a non-empty string",
        ),
        (
            BASE.replace(
                "    min_age_days: 7\n", "    min_age_days: 7\n    include: [{regex: a, glob: b}]\n"
            ),
            "11:15",
            "give one of regex or glob",
        ),
        (BASE + "rings: pilot\n", "15:8", "rings must be a non-empty list"),
        (
            BASE + "rings: [{name: a, select: {all: true}}, {name: a, select: {all: true}}]\n",
            "15:48",
            "duplicate ring name 'a'",
        ),
        (
            BASE + "rings: [{name: a, select: {all: true}, soak: soon}]\n",
            "15:46",
            "soak: duration 'soon' is not understood",
        ),
        (BASE + "pre_install: stop.sh\n", "15:14", "pre_install must be a list"),
        (BASE + "report_back: 0s\n", "15:14", "report_back must be over 0"),
        (
            BASE.replace("consent: ask}", "consent: ask, max_deferrals: -1}"),
            "14:58",
            "max_deferrals must be a number from 0 to 100",
        ),
        (BASE + "enabled: maybe\n", "15:10", "enabled must be true or false"),
        (
            BASE.replace("min_age_days: 7", "min_age_days: -1"),
            "10:19",
            "min_age_days must be a number from 0 to 3650",
        ),
        (
            BASE.replace("    min_age_days: 7\n", "    min_age_days: 7\n    action: maybe\n"),
            "11:13",
            "action 'maybe' is unknown",
        ),
        (BASE.replace("offset_days: 3", "offset_days: 30"), "12:56", "from 0 to 27"),
        (BASE.replace("weekday: tuesday, ", ""), "12:16", "missing required key 'weekday'"),
        (
            BASE.replace("  duration: 4h\n", '  cron: "0 0 * * *"\n  duration: 4h\n'),
            "13:9",
            "exactly one of cron or nth_weekday",
        ),
        (BASE.replace("rmm/v1", "rmm/v2"), "1:13", "unsupported apiVersion"),
        (
            BASE.replace("  - name: bugfix", "  - name: security"),
            "8:5",
            "duplicate rule name (approval 1 has it)",
        ),
        (BASE.replace("approval:\n", "approval: {}\nx:\n"), "5:11", "approval must be a list"),
        (
            HEAD + "metadata: {name: n}\nscope: {all: true}\n",
            "1:1",
            "the document sets nothing",
        ),
    ],
)
def test_every_loader_error_names_file_line_and_column(
    tmp_path: Path, text: str, where: str, reason: str
) -> None:
    errors = errors_of(tmp_path, text)
    assert errors, "the document should be refused"
    path = tmp_path / "p.yaml"
    assert any(e.startswith(f"{path}:{where}: ") and reason in e for e in errors), errors


def test_an_override_of_nothing_a_duplicate_and_an_unlisted_layer_are_refused(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.yaml").write_text(BASE)
    errors = errors_of(
        tmp_path,
        HEAD
        + """metadata: {name: acme}
layer: client
scope: {clients: [acme]}
approval:
  - name: bugfx
    min_age_days: 3
---
"""
        + HEAD
        + """metadata: {name: again}
scope: {all: true}
approval:
  - name: security
    classifications: [critical]
---
"""
        + HEAD
        + """metadata: {name: siteless}
layer: site
scope: {all: true}
enabled: false
""",
        name="b.yaml",
    )
    text = "\n".join(errors)
    b = tmp_path / "b.yaml"
    assert f"{b}:7:5: " in text and "no higher layer defines 'bugfx'" in text
    assert f"{b}:15:5: " in text and "defined twice for the same layer and scope" in text
    assert f"{b}:22:8: " in text and "a site-layer policy must list scope.sites" in text


def test_a_bad_reload_keeps_the_last_good_patch_policies(tmp_path: Path) -> None:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "p.yaml").write_text(BASE)
    service = AlertService(
        open_store(f"sqlite:///{tmp_path / 'db.sqlite'}"),
        CollectorRegistry(),
        directory,
        offline_grace_seconds=120,
        clock=lambda: 1_000_000.0,
    )
    service.load()
    assert service.policies is not None
    before = service.policies.patches.settings_for(agent())
    (directory / "p.yaml").write_text(BASE.replace("[security]", "[securty]"))
    ok, errors = service.reload_policies()
    assert not ok and any(":7:" in e and "securty" in e for e in errors)
    assert service.policies.patches.settings_for(agent()) == before
    (directory / "p.yaml").write_text(BASE.replace("min_age_days: 7", "min_age_days: 2"))
    assert service.reload_policies() == (True, [])
    after = service.policies.patches.settings_for(agent())
    assert after.rules[1].min_age_seconds == 2 * 86400


def test_rings_pick_the_first_selector_that_holds_the_agent(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        BASE
        + """rings:
  - {name: canary, select: {agents: ["""
        + AGENT_ID
        + """]}, soak: 2h, no_new_critical_alert: false}
  - {name: pilot, select: {tags: [pilot]}}
  - {name: broad, select: {all: true}}
"""
    )
    patches = load_policy_dir(tmp_path).patches
    canary = patches.settings_for(agent({"pilot"}))
    assert canary.ring is not None
    assert (canary.ring.name, canary.ring.soak_seconds, canary.ring.no_new_critical_alert) == (
        "canary",
        7200.0,
        False,
    )
    assert canary.ring.require_reboot_report
    pilot = patches.settings_for(agent({"pilot"}, agent_id="b2" * 16))
    assert pilot.ring is not None and (pilot.ring.name, pilot.ring.order) == ("pilot", 1)


def test_nth_weekday_plus_offset_finds_the_next_window() -> None:
    base = load_policy_dir(ROOT / "policies").patches.settings_for(agent())
    assert base.schedule is not None
    # December 2026: Tuesdays are the 1st, 8th...; the second is the 8th, + 3 days = Friday 11th.
    start = trigger_for(base.schedule, "UTC").get_next_fire_time(
        None, datetime(2026, 12, 1, tzinfo=UTC)
    )
    assert start is not None
    assert start == datetime(2026, 12, 11, 22, 0, tzinfo=start.tzinfo)
    # Between the Tuesday and its Friday, the window of this month is still ahead.
    start = trigger_for(base.schedule, "UTC").get_next_fire_time(
        None, datetime(2026, 12, 9, tzinfo=UTC)
    )
    assert start is not None and start.day == 11
    # After it, January 2027: Tuesdays 5th, 12th -> Friday 15th.
    start = trigger_for(base.schedule, "UTC").get_next_fire_time(
        None, datetime(2026, 12, 12, tzinfo=UTC)
    )
    assert start is not None and (start.month, start.day) == (1, 15)


def test_an_alert_policy_load_error_and_a_patch_one_are_reported_together(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.yaml").write_text(BASE.replace("[bugfix]", "[bugfx]"))
    (tmp_path / "b.yaml").write_text(
        "apiVersion: rmm/v1\nkind: AlertPolicy\nmetadata: {name: x}\nscope: {all: true}\n"
        "rules:\n  - {name: A, expr: nope > 1}\n"
    )
    with pytest.raises(PolicyError) as caught:
        load_policy_dir(tmp_path)
    text = "\n".join(caught.value.errors)
    assert f"{tmp_path / 'a.yaml'}:9:" in text and f"{tmp_path / 'b.yaml'}:6:" in text


def test_pre_and_post_install_scripts_must_be_in_the_script_library(tmp_path: Path) -> None:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "p.yaml").write_text(
        BASE + "pre_install: [{script: stop-app.sh, args: [--now], timeout: 5m}]\n"
        "post_install: [{script: start-ap.sh}]\n"
    )
    service = AlertService(
        open_store(f"sqlite:///{tmp_path / 'db.sqlite'}"),
        CollectorRegistry(),
        directory,
        offline_grace_seconds=120,
        clock=lambda: 1_000_000.0,
    )
    library = {"stop-app.sh", "start-app.sh"}
    service.unknown_scripts = lambda names: [n for n in names if n not in library]
    with pytest.raises(ConfigError) as caught:
        service.load()
    assert (
        f"{directory / 'p.yaml'}:16: patch policy script 'start-ap.sh' names no script in the "
        "server's script library (`rmm scripts list` shows them; add the script there or fix "
        "the name)"
    ) in str(caught.value)
    assert "stop-app.sh" not in str(caught.value)
    (directory / "p.yaml").write_text(
        BASE + "pre_install: [{script: stop-app.sh, args: [--now], timeout: 5m}]\n"
    )
    service.load()
    assert service.policies is not None
    steps = service.policies.patches.settings_for(agent()).pre_install
    assert [(s.script, s.args, s.timeout_seconds) for s in steps] == [
        ("stop-app.sh", ("--now",), 300.0)
    ]


RESTART_SCRIPT = """#!/bin/sh
# ---
# description: restart a service around patching
# shells: [sh]
# params:
#   - name: service
#     type: string
#     required: true
#   - name: wait
#     type: int
#     min: 0
#     max: 600
#     default: 30
# ---
systemctl restart "$RMM_PARAM_SERVICE"
"""


def params_service(tmp_path: Path, steps: str) -> tuple[AlertService, Path]:
    """A policy directory whose patch policy has `steps`, and an alert service checking it
    against a real script library holding restart-app (with declared parameters)."""
    directory, library = tmp_path / "policies", tmp_path / "scripts"
    directory.mkdir()
    library.mkdir()
    (library / "restart-app.sh").write_text(RESTART_SCRIPT)
    (directory / "p.yaml").write_text(BASE + steps)
    scripts = ScriptLibrary.load(library)
    service = AlertService(
        open_store(f"sqlite:///{tmp_path / 'db.sqlite'}"),
        CollectorRegistry(),
        directory,
        offline_grace_seconds=120,
        clock=lambda: 1_000_000.0,
    )
    service.unknown_scripts = scripts.unknown_scripts
    service.script_params_problem = scripts.params_problem
    return service, directory / "p.yaml"


def test_script_step_params_are_checked_against_the_scripts_declared_parameters(
    tmp_path: Path,
) -> None:
    service, path = params_service(
        tmp_path,
        "pre_install:\n"
        "  - {script: restart-app, params: {service: nginx, wait: 5}}\n"  # line 16
        "post_install:\n"
        "  - script: restart-app\n"  # line 18: service is required
        "  - script: restart-app\n"
        "    params: {servce: nginx, wait: soon}\n",  # line 20
    )
    with pytest.raises(ConfigError) as caught:
        service.load()
    text = str(caught.value)
    assert f"{path}:18:5: post_install library script 'restart-app': params.service is " in text
    assert "required: give params.service=VALUE" in text
    assert (
        f"{path}:20:13: post_install library script 'restart-app': params.servce: the script "
        "declares no such parameter; did you mean 'service'?"
    ) in text
    assert "params.wait=soon" in text and "wait takes" in text
    assert f"{path}:16:" not in text, "the first step's params fit"
    refused = service.policies
    assert refused is None, "nothing is loaded from a refused set"

    path.write_text(
        BASE + "pre_install:\n  - {script: restart-app, params: {service: nginx, wait: 5}}\n"
    )
    service.load()
    assert service.policies is not None
    (step,) = service.policies.patches.settings_for(agent()).pre_install
    assert step.params == (("service", "nginx"), ("wait", "5"))


def test_script_step_params_must_be_a_mapping_of_single_values(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        BASE + "pre_install:\n  - {script: a, params: [service]}\n"
        "post_install:\n  - {script: b, params: {service: [a, b]}}\n",
    )
    text = "\n".join(errors)
    assert ":16:25: " in text and "pre_install.params must be a mapping of name: value" in text
    assert ":18:35: " in text and "post_install.params.service must be a single value" in text
