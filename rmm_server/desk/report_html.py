"""A contract report as one self-contained HTML page (no scripts, no links out, styles inline).

Rendered on the server, where Jinja2 is installed for the dashboard (the `rmm` CLI does not
carry it); every value is escaped (autoescape), hostnames and client names included, since an
agent reports its own hostname.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, StrictUndefined, Template

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Contract report: {{ r.client }}, {{ r.month }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child,td.t{text-align:left}
th{background:#f3f3f3}
.low{color:#b00020;font-weight:600}
</style></head><body>
<h1>{{ r.client }}: {{ r.month }}</h1>
<p>{{ day(r.start) }} to {{ day(r.end) }} ({{ r.time_zone }}){% if not r.complete %},
month not over{% endif %}.
{% if r.contract %}Contract: {{ r.contract.type }}{% if r.contract.hours_per_period is not none %},
{{ num(r.contract.hours_per_period) }} h a month{% endif %}{% if r.contract.rate is not none %},
{{ num(r.contract.rate) }} {{ r.contract.currency }} an hour{% endif %}.
{% else %}No contract.{% endif %}</p>

<h2>Availability</h2>
<p>Overall {{ pct(r.availability.overall) }}; planned maintenance excluded.
Patch compliance: {{ r.availability.patches.compliant }} of
{{ r.availability.patches.agents_listing }} agents listing their updates
({{ pct(r.availability.patches.ratio) }}).</p>
<table><tr><th>Host</th><th>Site</th><th>Availability</th><th>Offline</th>
<th>Maintenance</th><th>Enrolled</th><th>Patches</th></tr>
{% for a in r.availability.agents %}<tr>
<td>{{ a.hostname or a.agent_id }}</td><td class="t">{{ a.site }}</td>
<td{% if a.availability is not none and a.availability < 0.99 %} class="low"{% endif %}>
{{ pct(a.availability) }}</td>
<td>{{ hours(a.offline_seconds) }}</td><td>{{ hours(a.maintenance_seconds) }}</td>
<td>{{ hours(a.enrolled_seconds) }}</td>
<td>{% if a.patch_compliant is none %}-{% elif a.patch_compliant %}compliant{% else %}
<span class="low">missing</span>{% endif %}</td></tr>
{% endfor %}</table>

<h2>Alerts</h2>
<table><tr><th>Severity</th><th>Fired</th><th>Acknowledge median / p90</th>
<th>Resolve median / p90</th><th>SLA</th><th>Acknowledged in time</th>
<th>Resolved in time</th></tr>
{% for severity, s in r.alerts.items() %}<tr><td>{{ severity }}</td><td>{{ s.count }}</td>
<td>{{ dur(s.acknowledge_median_seconds) }} / {{ dur(s.acknowledge_p90_seconds) }}</td>
<td>{{ dur(s.resolve_median_seconds) }} / {{ dur(s.resolve_p90_seconds) }}</td>
{% if s.sla %}<td>{{ dur(s.sla.acknowledge_seconds) }} / {{ dur(s.sla.resolve_seconds) }}
{{ s.sla.clock }}</td>
<td>{{ s.sla.acknowledge_met }} met, {{ s.sla.acknowledge_missed }} missed,
{{ s.sla.acknowledge_open }} open</td>
<td>{{ s.sla.resolve_met }} met, {{ s.sla.resolve_missed }} missed,
{{ s.sla.resolve_open }} open</td>
{% else %}<td>-</td><td>-</td><td>-</td>{% endif %}</tr>
{% endfor %}</table>

<h2>Tickets</h2>
<table><tr><th>Tier</th><th>Opened</th><th>Resolved</th><th>Closed</th>
<th>Opened and escalated by SLA</th></tr>
{% for tier, t in r.tickets.items() %}<tr><td>{{ tier }}</td><td>{{ t.opened }}</td>
<td>{{ t.resolved }}</td><td>{{ t.closed }}</td><td>{{ t.sla_breached }}</td></tr>
{% endfor %}</table>

<h2>Hours</h2>
<p>{{ num(r.hours.used) }} h used in {{ r.hours.period }} (UTC month,
{{ r.hours.entries }} entries){% if r.hours.included is not none %}, {{ num(r.hours.included) }}
included, <span{% if r.hours.left < 0 %} class="low"{% endif %}>{{ num(r.hours.left) }} left</span>
{%- endif %}{% if r.hours.billable_amount is not none %}; billable
{{ num(r.hours.billable_amount) }} {{ r.hours.currency }}{% endif %}.</p>
<p><small>Generated {{ day(r.generated_at, True) }}.</small></p>
</body></html>
"""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.3f} %"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _num(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".")


@functools.cache
def _template() -> Template:
    # Compiled once, on the first report asked for as HTML (about 8 ms each time otherwise),
    # not at import: most servers never render one.
    return Environment(autoescape=True, undefined=StrictUndefined).from_string(TEMPLATE)


def render_html(report: dict[str, Any]) -> str:
    """Return the report as one HTML page."""
    zone = ZoneInfo(report["time_zone"])

    def day(ts: float, utc: bool = False) -> str:
        when = datetime.fromtimestamp(ts, UTC if utc else zone)
        return when.strftime("%Y-%m-%d %H:%M %Z")

    return _template().render(r=report, pct=_pct, hours=_hours, dur=_dur, num=_num, day=day)
