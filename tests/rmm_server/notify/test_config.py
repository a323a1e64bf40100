"""Loading, validating and routing the notification config."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmm_common.errors import ConfigError
from rmm_server.notify import RouteMatch, load_notify_config, parse_notify_config
from rmm_server.notify.config import parse_matcher
from tests.rmm_server.notify.support import notice

EXAMPLE = Path(__file__).parents[3] / "deploy" / "notifications.example.yaml"
EXAMPLE_ENV = {
    "RMM_SMTP_PASSWORD": "pw",
    "RMM_TEAMS_L2_WEBHOOK": "https://example.webhook.office.com/x",
    "RMM_SLACK_ONCALL_WEBHOOK": "https://hooks.slack.com/services/T/B/X",
    "RMM_PSA_TOKEN": "token",
}


def receivers(matches: list[RouteMatch]) -> list[str]:
    """Return the receivers of `matches`, in order."""
    return [match.receiver for match in matches]


def test_the_shipped_example_loads_and_routes() -> None:
    config = load_notify_config(EXAMPLE, env=EXAMPLE_ENV)
    assert set(config.receivers) == {"l1-desk", "l2-engineers", "l3-oncall", "psa-tickets"}
    assert config.receivers["l1-desk"].settings.password == "pw"
    assert config.receivers["psa-tickets"].settings.headers == {"Authorization": "Bearer token"}
    assert config.delivery.attempts == 5
    # critical: tickets (continue) and then the big-client route; L1's desk by tier.
    critical = notice(client="bigbank", severity="critical")
    assert receivers(config.route_for(critical)) == ["psa-tickets", "l3-oncall", "l1-desk"]
    # A warning elsewhere falls to the root receiver, which is also the L1 desk: told once.
    assert receivers(config.route_for(notice(severity="warning"))) == ["l1-desk"]
    assert receivers(config.route_for(notice(severity="warning", tier="L2"))) == [
        "l1-desk",
        "l2-engineers",
    ]
    info = notice(rule="InventoryChanged", severity="info")
    (match,) = config.route_for(info)
    assert match.repeat_interval == 7 * 86400
    assert match.group_wait == 30  # inherited from the root
    assert config.tier_receiver("L2") == "l2-engineers"
    assert config.ack_timeout("L1") == 900
    assert config.ack_timeout("L3") is None
    assert config.next_tier("L1") == "L2"
    assert config.next_tier("L3") is None
    assert config.tiers["L3"].route.group_wait == 0
    assert config.tiers["L2"].route.group_interval == 300


def test_route_tree_continue_and_label_matchers() -> None:
    config = parse_notify_config("""
receivers:
  - {name: default, webhook: {url: "http://127.0.0.1:1/d"}}
  - {name: disks, webhook: {url: "http://127.0.0.1:1/disk"}}
  - {name: audit, webhook: {url: "http://127.0.0.1:1/a"}}
  - {name: acme, webhook: {url: "http://127.0.0.1:1/acme"}}
route:
  receiver: default
  routes:
    - matchers: ['site =~ "hq|branch-.*"']
      receiver: audit
      continue: true
    - matchers: ['client = acme']
      receiver: acme
      group_by: [site]
      routes:
        - matchers: ['mountpoint !~ "/snap/.*"', 'rule = DiskLow']
          receiver: disks
    - matchers: ['client = acme']
      receiver: default
""")
    disk = notice(rule="DiskLow", labels={"mountpoint": "/var"})
    assert receivers(config.route_for(disk)) == ["audit", "disks"]
    snap = notice(rule="DiskLow", site="lab", labels={"mountpoint": "/snap/core/1"})
    (match,) = config.route_for(snap)  # child did not match: the parent takes it
    assert match.receiver == "acme"
    assert match.route_id == "route.routes[1]"
    assert match.group_by == ("site",)
    # As in Alertmanager, the parent's receiver is only for notices no child took.
    assert receivers(config.route_for(notice(client="globex", site="branch-7"))) == ["audit"]
    assert receivers(config.route_for(notice(client="globex", site="x"))) == ["default"]


def test_matcher_syntax() -> None:
    assert str(parse_matcher('client =~ "acme|globex"')) == "client=~'acme|globex'"
    assert parse_matcher("severity=critical").matches(notice(severity="critical"))
    assert parse_matcher("alertname != AgentOffline").matches(notice(rule="DiskLow"))
    assert not parse_matcher("agent = agent-0").matches(notice(agent_id="agent-1"))


def test_every_error_is_reported_with_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "notify.yaml"
    path.write_text(
        """receivers:
  - name: desk
    webhook: {url: "ftp://x", formt: alertmanager}
  - name: mail
    email:
      smarthost: smtp.example
      from: rmm@x
      to: []
      auth_password: ${MISSING_SECRET}
  - name: two
    slack: {url: "https://h/x"}
    teams: {url: "https://h/y"}
route:
  receiver: nobody
  group_wait: soon
  routes:
    - matchers: ['severity == critical']
      receiver: desk
      contine: true
tiers:
  L4: {receiver: desk}
  L1: {ack_timeout: 15m}
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_notify_config(path, env={})
    lines = str(caught.value).splitlines()
    expected = [
        f"{path}:3:20: receivers[0] 'desk': webhook: url must start with http:// or https://",
        f"{path}:3:31: receivers[0] 'desk': webhook: unknown key 'formt'; did you mean 'format'?",
        f"{path}:6:18: receivers[1] 'mail': email: smarthost 'smtp.example' must be host:port",
        f"{path}:9:22: receivers[1] 'mail': email: environment variable MISSING_SECRET is not set",
        f"{path}:8:11: receivers[1] 'mail': email: to must not be empty",
        f"{path}:10:5: receivers[2] 'two': names 2 notifiers; give exactly one of",
        f"{path}:14:13: route: receiver 'nobody' is not defined",
        f"{path}:15:15: route: group_wait: duration 'soon' is not understood",
        f"{path}:17:18: route.routes[0]: matcher 'severity == critical' is not understood",
        f"{path}:19:7: route.routes[0]: unknown key 'contine'; did you mean 'continue'?",
        f"{path}:22:7: tiers.L1: missing required key 'receiver'",
        f"{path}:21:3: tiers: unknown key 'L4'",
    ]
    for start in expected:
        assert any(line.startswith(start) for line in lines), f"{start!r} not in {lines}"
    assert len(lines) == len(expected)


def test_yaml_syntax_error_and_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("receivers: [\n  - name: x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}:\d+:\d+: not valid YAML"):
        load_notify_config(path)
    with pytest.raises(ConfigError, match="cannot read the notification config"):
        load_notify_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="given twice"):
        parse_notify_config("receivers: []\nroute: {receiver: a, receiver: b}\n")


def test_a_bad_reload_is_refused_and_the_old_config_stays(tmp_path: Path) -> None:
    path = tmp_path / "notify.yaml"
    path.write_text(
        'receivers: [{name: a, webhook: {url: "http://127.0.0.1:1/"}}]\nroute: {receiver: a}\n',
        encoding="utf-8",
    )
    config = load_notify_config(path)
    path.write_text(
        'receivers: [{name: a, webhook: {url: "http://127.0.0.1:1/"}}]\nroute: {receiver: b}\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=":2:19: route: receiver 'b' is not defined"):
        config = load_notify_config(path)
    assert config.route.receiver == "a"
