"""Test policy loading, validation, layering, scope and evaluation, with the shipped policies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rmm_common.errors import PolicyError, RmmError
from rmm_server.policy import (
    AgentContext,
    SeriesSample,
    load_policy_dir,
    report_json_to_context,
    validate_path,
)

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "policies"
BROKEN = ROOT / "tests" / "fixtures" / "policies" / "broken" / "bad.yaml"


def agent(tags: set[str], client: str = "acme", site: str = "hq", **kw: object) -> AgentContext:
    fields: dict[str, object] = {
        "agent_id": "a1",
        "hostname": "web01",
        "client": client,
        "site": site,
        "tags": frozenset(tags),
        "os": "linux",
        "interval_seconds": 60.0,
        "seconds_since_report": 10.0,
        "info": {},
    }
    fields.update(kw)
    return AgentContext(**fields)  # type: ignore[arg-type]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


HEAD = "apiVersion: rmm/v1\nkind: AlertPolicy\n"


def test_shipped_policies_load() -> None:
    assert validate_path(SHIPPED) == []
    policies = load_policy_dir(SHIPPED)
    assert {"common", "servers", "workstations", "acme-hq"} <= set(policies.policies)


def test_every_error_is_collected_with_file_line_and_rule() -> None:
    errors = validate_path(BROKEN)
    path = str(BROKEN)
    expected_starts = [
        f'{path}:8:15: policy "bad", rule 1 "DiskLow": severity \'urgent\' is unknown',
        f"{path}:11:5: policy \"bad\", rule 2: unknown key 'frequency'",
        f'{path}:14:10: policy "bad", rule 3 "BadFor": for: duration',
        f'{path}:16:11: policy "bad", rule 4 "BadCel": CEL does not compile',
        f'{path}:19:18: policy "bad", rule 5 "BadTemplate": annotations.summary: unknown template',
        f'{path}:20:5: policy "bad", rule 6 "DiskLow": duplicate rule name (rule 1 has it)',
        f'{path}:23:11: policy "bad", rule 7 "MixedTypes": expr does not evaluate',
        f'{path}:25:11: policy "bad", rule 8 "Join": disk_usage_ratio{{mountpoint,device,fstype}}',
    ]
    for start in expected_starts:
        assert any(e.startswith(start) for e in errors), (start, errors)
    assert any(":10:11:" in e and "disk_usage_ratoi" in e for e in errors)
    with pytest.raises(PolicyError) as caught:
        load_policy_dir(BROKEN)
    assert isinstance(caught.value, RmmError)
    assert caught.value.errors == errors


def test_unknown_metric_and_param_are_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        HEAD
        + "metadata: {name: p}\nscope: {all: true}\nrules:\n"
        + "  - name: A\n    expr: disk_usage_ratoi > params.warn\n",
    )
    errors = validate_path(path)
    assert any(
        ":7:11:" in e and "unknown name 'disk_usage_ratoi'" in e and "disk_usage_ratio" in e
        for e in errors
    ), errors


def test_empty_scope_and_site_without_client_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        HEAD
        + "metadata: {name: p}\nscope: {}\nrules:\n  - {name: A, expr: 'cpu_usage_ratio > 0.5'}\n"
        "---\n" + HEAD + "metadata: {name: q}\nlayer: site\nscope: {sites: [hq]}\n"
        "rules:\n  - {name: B, expr: 'cpu_usage_ratio > 0.5'}\n",
    )
    errors = validate_path(path)
    assert any(":4:8:" in e and "empty scope" in e for e in errors), errors
    assert any(":12:16:" in e and "must name its client" in e for e in errors), errors


def test_workstation_rules_never_apply_to_servers() -> None:
    policies = load_policy_dir(SHIPPED)
    server = {r.key for r in policies.rules_for(agent({"server"}))}
    workstation = {r.key for r in policies.rules_for(agent({"workstation"}))}
    untagged = {r.key for r in policies.rules_for(agent(set()))}
    assert not any(k.startswith("workstations/") for k in server)
    assert not any(k.startswith("servers/") for k in workstation)
    assert not any(k.startswith(("servers/", "workstations/")) for k in untagged)
    both = {r.key for r in policies.rules_for(agent({"server", "workstation"}))}
    assert not any(k.startswith(("servers/", "workstations/")) for k in both)


def test_site_layer_overrides_params_and_explain_says_who(tmp_path: Path) -> None:
    policies = load_policy_dir(SHIPPED)
    hq = {r.name: r for r in policies.explain(agent({"server"}))}
    other = {r.name: r for r in policies.explain(agent({"server"}, site="branch"))}
    assert hq["DiskSpaceLow"].params["warn"] == 0.9
    assert other["DiskSpaceLow"].params["warn"] == 0.85
    who = hq["DiskSpaceLow"].set_by("params")
    assert who is not None and who.layer == "site" and who.policy == "acme-hq"
    assert who.source.endswith("site-overrides.yaml:16")
    assert hq["DiskSpaceLow"].set_by("expr") == other["DiskSpaceLow"].set_by("expr")


def test_disable_at_agent_layer_and_override_typo(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text((SHIPPED / "common.yaml").read_text())
    write(
        tmp_path,
        "z.yaml",
        HEAD + "metadata: {name: quiet}\nlayer: agent\nscope: {clients: [acme], agents: [web01]}\n"
        "rules:\n  - {name: DiskSpaceLow, enabled: false}\n",
    )
    policies = load_policy_dir(tmp_path)
    names = {r.name for r in policies.rules_for(agent(set()))}
    assert "DiskSpaceLow" not in names and "DiskSpaceCritical" in names
    disabled = next(r for r in policies.explain(agent(set())) if r.name == "DiskSpaceLow")
    assert not disabled.enabled and disabled.set_by("enabled").policy == "quiet"  # type: ignore[union-attr]
    assert "DiskSpaceLow" in {
        r.name for r in policies.rules_for(agent(set(), hostname="db01", agent_id="a2"))
    }
    write(
        tmp_path,
        "z.yaml",
        HEAD + "metadata: {name: quiet}\nlayer: agent\nscope: {clients: [acme], agents: [web01]}\n"
        "rules:\n  - {name: DiskSpaceLo, enabled: false}\n"
        "  - {name: DiskSpaceLow, params: {wran: 0.5}}\n",
    )
    errors = validate_path(tmp_path)
    assert any("z.yaml:7:5" in e and "no higher layer defines" in e for e in errors), errors
    assert any("z.yaml:8:" in e and "params.wran is not declared" in e for e in errors), errors


def test_a_scope_names_agents_by_whole_id_or_by_hostname_pinned_to_a_client(
    tmp_path: Path,
) -> None:
    victim_id = "0123456789abcdef" * 2

    def quiet(scope: str) -> None:
        write(
            tmp_path,
            "z.yaml",
            HEAD + f"metadata: {{name: quiet}}\nlayer: agent\nscope: {scope}\n"
            "rules:\n  - {name: DiskSpaceLow, enabled: false}\n",
        )

    def quieted(agent_id: str, hostname: str, client: str = "acme") -> bool:
        context = agent(set(), client, agent_id=agent_id, hostname=hostname)
        rules = load_policy_dir(tmp_path).rules_for(context)
        return "DiskSpaceLow" not in {r.name for r in rules}

    (tmp_path / "base.yaml").write_text((SHIPPED / "common.yaml").read_text())
    # By id: an agent of another client that names itself after the id is not in the scope.
    quiet(f"{{agents: [{victim_id}]}}")
    assert quieted(agent_id=victim_id, hostname="web01")
    assert not quieted(agent_id="f" * 32, hostname=victim_id, client="evil")
    # By hostname: only inside the clients (or sites) the scope names, in any case.
    quiet("{clients: [acme], agents: [host=WEB01]}")
    assert quieted(agent_id="a1", hostname="web01")
    assert not quieted(agent_id="a3", hostname="web01", client="evil")
    assert not quieted(agent_id="a4", hostname="w\u0435b01")  # a look-alike is not web01
    # Refused: a hostname any client's agent could claim, and a fragment of an id.
    quiet("{agents: [web01]}")
    assert any(
        "which an agent of any client can report" in e and "pin the scope with clients:" in e
        for e in validate_path(tmp_path)
    )
    quiet("{clients: [acme], agents: [dc01]}")
    assert any(
        "'dc01' is not a whole agent id" in e and "host=dc01" in e for e in validate_path(tmp_path)
    )


def disk(mountpoint: str, ratio: float, fstype: str = "ext4") -> SeriesSample:
    return SeriesSample(
        "disk_usage_ratio", {"mountpoint": mountpoint, "device": "/dev/x", "fstype": fstype}, ratio
    )


def test_per_series_evaluation_with_match_clear_and_templates() -> None:
    policies = load_policy_dir(SHIPPED)
    samples = [
        disk("/", 0.86),
        disk("/data", 0.84),
        disk("/boot/efi", 0.99),
        disk("/run", 0.99, "tmpfs"),
    ]
    found = {
        (c.rule.name, c.series_labels["mountpoint"]): c
        for c in policies.evaluate(agent(set(), site="branch"), samples)
        if c.rule.name.startswith("Disk")
    }
    assert set(found) == {
        (n, m) for n in ("DiskSpaceLow", "DiskSpaceCritical") for m in ("/", "/data")
    }
    root = found[("DiskSpaceLow", "/")]
    assert root.active and root.clear is False and root.value == 0.86
    assert root.annotations["summary"] == "/ on web01 is 86.0% full"
    data = found[("DiskSpaceLow", "/data")]
    # Under the threshold but inside the hysteresis band: not active, not cleared either.
    assert not data.active and data.clear is False
    assert found[("DiskSpaceCritical", "/")].clear is True


def test_offline_rule_on_timer_and_missing_metrics() -> None:
    policies = load_policy_dir(SHIPPED)
    late = policies.evaluate(agent({"server"}, seconds_since_report=200.0), [])
    offline = [c for c in late if c.rule.name == "AgentOffline"]
    assert len(offline) == 1 and offline[0].active and offline[0].value == 200.0
    assert offline[0].annotations["summary"] == "web01 has not reported for 3m20s"
    assert [c.rule.name for c in late if c.rule.name != "AgentOffline"] == [
        "SoftwareInstalled",
        "ServiceStopped",
        "ProcessMissing",
    ]
    fresh = policies.evaluate(agent({"server"}, seconds_since_report=100.0), [])
    assert not next(c for c in fresh if c.rule.name == "AgentOffline").active


def test_named_process_and_service_from_info() -> None:
    policies = load_policy_dir(SHIPPED)
    info = {
        "processes": {"names": ["sshd", "systemd"]},
        "services": {"services": [{"unit": "ssh.service", "active": "failed"}]},
    }
    found = {c.rule.name: c for c in policies.evaluate(agent({"server"}, info=info), [])}
    assert found["ProcessMissing"].active, "acme/hq watches nginx, which is not running"
    assert found["ServiceStopped"].active
    info["processes"] = {"names": ["nginx"]}
    info["services"] = {"services": [{"unit": "ssh.service", "active": "active"}]}
    found = {c.rule.name: c for c in policies.evaluate(agent({"server"}, info=info), [])}
    assert not found["ProcessMissing"].active and not found["ServiceStopped"].active


@pytest.mark.linux
def test_shipped_policies_on_this_hosts_real_report() -> None:
    raw = subprocess.run(
        [str(Path(sys.executable).with_name("rmm-agent")), "collect", "--once", "--output", "json"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    context, samples = report_json_to_context(
        json.loads(raw), client="demo", site="local", tags={"server"}, interval_seconds=10.0
    )
    policies = load_policy_dir(SHIPPED)
    conditions = policies.evaluate(context, samples)
    real_mounts = {
        s.labels["mountpoint"]
        for s in samples
        if s.name == "disk_usage_ratio"
        and s.labels["fstype"] not in ("tmpfs", "overlay", "devtmpfs")
        and not s.labels["mountpoint"].startswith(("/boot", "/snap/"))
    }
    disk_conditions = [c for c in conditions if c.rule.name == "DiskSpaceLow"]
    assert {c.series_labels["mountpoint"] for c in disk_conditions} == real_mounts
    assert all(not c.active for c in disk_conditions), "this host's disks are not 85 % full"
    offline = [c for c in conditions if c.rule.name == "AgentOffline"]
    assert len(offline) == 1 and not offline[0].active
    assert any(c.rule.name == "UptimeLong" and not c.active for c in conditions)
