"""PatchPolicy documents: read strictly beside alert policies, layered like them, per agent.

A PatchPolicy has the header, `scope` and `layer` of an AlertPolicy (read by the same functions
of rmm_server/policy/loader.py) and patch settings instead of rules. Merge rules, as for alert
policies (docs/patching.md says the same with examples):

1. Documents whose scope holds the agent apply global → client → site → agent, then by file and
   position. A setting a later document gives replaces the earlier one: `enabled`, `schedule`
   (whole), `rings` (whole), `pre_install`, `post_install`, `report_back`; `reboot` merges key
   by key.
2. An `approval` entry is an override when a higher layer defines a rule of that name: the
   fields it gives replace those of every rule of that name in force for the agent. Otherwise it
   is a definition with key "policy/rule", and must say `classifications` (an override that
   overrides nothing is refused, so a typo never becomes a silent new rule).
3. Drivers and firmware are approved only by a rule listing their classification; a rule for
   them may pin hardware ids.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from rmm_common.errors import ConfigError
from rmm_common.yamlnodes import (
    Where,
    line_of,
    mapping,
    scalar,
    string,
    string_list,
)
from rmm_server.patching.model import (
    ACTIONS,
    CLASSIFICATIONS,
    DEVICE_CLASSIFICATIONS,
    REBOOT_CONSENT,
    REBOOT_MODES,
    SITE_TIME_ZONE,
    WEEKDAYS,
    ApprovalRule,
    NamePattern,
    PatchSchedule,
    PatchSettings,
    RebootPolicy,
    Ring,
    ScriptStep,
)
from rmm_server.patching.windows import trigger_for
from rmm_server.policy.loader import (
    API_VERSION,
    DocumentKind,
    Scope,
    check_layer_scope,
    parse_duration_node,
    parse_layer,
    parse_metadata,
    parse_scope,
)
from rmm_server.policy.model import LAYERS, AgentContext, Provenance

KIND = "PatchPolicy"
_TOP_KEYS = (
    "apiVersion",
    "kind",
    "metadata",
    "layer",
    "scope",
    "enabled",
    "approval",
    "schedule",
    "rings",
    "reboot",
    "pre_install",
    "post_install",
    "report_back",
)
# The document's settings, each replaced whole by a later document (reboot: key by key).
SETTINGS = ("enabled", "schedule", "rings", "pre_install", "post_install", "report_back")
_RULE_KEYS = (
    "name",
    "action",
    "classifications",
    "severities",
    "min_age_days",
    "include",
    "exclude",
    "hardware_ids",
    "enabled",
)
_SCHEDULE_KEYS = ("name", "cron", "nth_weekday", "duration", "time_zone")
_NTH_KEYS = ("nth", "weekday", "offset_days", "time")
_RING_KEYS = ("name", "select", "soak", "require_reboot_report", "no_new_critical_alert")
_REBOOT_KEYS = ("mode", "consent", "max_deferrals", "deferral")
_SCRIPT_KEYS = ("script", "args", "timeout", "params")
# The vendors' words (MSRC and dnf: Critical, Important, Moderate, Low; fwupd/LVFS: critical,
# high, medium, low, security); "unknown" matches an update whose backend says none.
SEVERITIES = ("critical", "important", "high", "moderate", "medium", "low", "security", "unknown")
_RULE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_NTH_WORDS = {1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 5: "5th", -1: "last"}
# A window longer than a month would overlap the next one of a monthly schedule.
_MAX_DURATION = 31 * 86400.0
_DAY = 86400.0
# Bound the per-agent cache, as the alert policy set does.
_CACHE_LIMIT = 100_000
_Items = dict[str, tuple[yaml.Node, yaml.Node]]


@dataclass(frozen=True)
class RuleEntry:
    """One entry of a document's `approval:` list, with the fields it gives."""

    index: int  # 1-based position in its document
    name: str
    values: Mapping[str, Any]  # ApprovalRule field (or "enabled") -> value, only those given
    node: yaml.Node
    override: bool = False

    def apply(self, rule: ApprovalRule, enabled: bool) -> tuple[ApprovalRule, bool]:
        """Return `rule` with this entry's fields laid over it, and whether it is enabled."""
        changes = {k: v for k, v in self.values.items() if k != "enabled"}
        return replace(rule, **changes), bool(self.values.get("enabled", enabled))


@dataclass(frozen=True)
class PatchDoc:
    """One PatchPolicy document."""

    name: str
    description: str
    layer: str
    scope: Scope
    path: str
    line: int
    order: int
    # Setting name (SETTINGS, or "reboot.<key>") -> (value, line of its key).
    settings: Mapping[str, tuple[Any, int]]
    rules: tuple[RuleEntry, ...]

    @property
    def rank(self) -> tuple[int, int]:
        """Return the order documents apply in: by layer, then by file and position."""
        return LAYERS.index(self.layer), self.order


def _context(doc: str, index: int | None = None, rule: str | None = None) -> str:
    text = f'patch policy "{doc}"'
    if index is not None:
        text += f", approval {index}" + (f' "{rule}"' if rule else "")
    return text


def _bool(node: yaml.Node, where: Where, context: str, what: str) -> bool | None:
    value = scalar(node) if isinstance(node, yaml.ScalarNode) else None
    if not isinstance(value, bool):
        where.at(node, context, f"{what} must be true or false")
        return None
    return value


def _number(
    node: yaml.Node, where: Where, context: str, what: str, low: float, high: float
) -> float | None:
    value = scalar(node) if isinstance(node, yaml.ScalarNode) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high:
        return float(value)
    where.at(node, context, f"{what} must be a number from {low:g} to {high:g}")
    return None


def _choice(
    node: yaml.Node, where: Where, context: str, what: str, allowed: Sequence[str]
) -> str | None:
    value = string(node, where, context, what)
    if value is not None and value not in allowed:
        where.at(node, context, f"{what} {value!r} is unknown", f"use {'|'.join(allowed)}")
        return None
    return value


# --- approval rules -------------------------------------------------------------------------


def _patterns(
    node: yaml.Node, where: Where, context: str, what: str
) -> tuple[NamePattern, ...] | None:
    """Read a list of name globs and `{regex: ...}` entries, each compiled now."""
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    out: list[NamePattern] = []
    ok = True
    for item in items:
        if isinstance(item, yaml.MappingNode):
            spec = mapping(item, where, context, ("regex", "glob"))
            if spec is None or len(spec) != 1:
                if spec is not None:
                    where.at(item, context, f"{what}: give one of regex or glob")
                ok = False
                continue
            kind, (_, value_node) = next(iter(spec.items()))
            text = string(value_node, where, context, f"{what}.{kind}")
            if text is None:
                ok = False
                continue
            if kind == "glob":
                out.append(NamePattern.glob(text))
                continue
            try:
                out.append(NamePattern.regex(text))
            except re.error as exc:
                where.at(
                    value_node,
                    context,
                    f"{what}: bad regular expression {text!r}: {exc}",
                    "Python re syntax, matched against the whole name or id",
                )
                ok = False
            continue
        text = string(item, where, context, f"each entry of {what}")
        if text is None:
            ok = False
            continue
        out.append(NamePattern.glob(text))
    return tuple(out) if ok else None


def _item_node(node: yaml.Node, value: str, fold: bool = False) -> yaml.Node:
    """Return the list item node holding `value` (the list itself when not found)."""
    for item in node.value if isinstance(node, yaml.SequenceNode) else ():
        text = str(getattr(item, "value", ""))
        if (text.casefold() if fold else text) == value:
            found: yaml.Node = item
            return found
    return node


def _rule_classifications(node: yaml.Node, where: Where, context: str) -> frozenset[str] | None:
    values = string_list(node, where, context, "classifications")
    if values is None:
        return None
    unknown = [v for v in values if v not in CLASSIFICATIONS]
    for value in unknown:
        where.at(
            _item_node(node, value),
            context,
            f"unknown classification {value!r}",
            f"use {', '.join(CLASSIFICATIONS)}",
        )
    if not values:
        where.at(node, context, "classifications must list at least one")
        return None
    return None if unknown else frozenset(values)


def _rule_severities(node: yaml.Node, where: Where, context: str) -> frozenset[str] | None:
    values = string_list(node, where, context, "severities")
    if values is None:
        return None
    folded = [v.casefold() for v in values]
    bad = [v for v in folded if v not in SEVERITIES]
    for value in bad:
        where.at(
            _item_node(node, value, fold=True),
            context,
            f"unknown severity {value!r}",
            f"use {', '.join(SEVERITIES)}",
        )
    return None if bad else frozenset(folded)


def _rule_field(key: str, node: yaml.Node, where: Where, context: str) -> tuple[str, Any]:
    """Return (ApprovalRule field, value) of one rule key; the value is None when wrong."""
    if key == "action":
        return "action", _choice(node, where, context, "action", ACTIONS)
    if key == "classifications":
        return key, _rule_classifications(node, where, context)
    if key == "severities":
        return key, _rule_severities(node, where, context)
    if key == "min_age_days":
        days = _number(node, where, context, "min_age_days", 0, 3650)
        return "min_age_seconds", None if days is None else days * _DAY
    if key in ("include", "exclude"):
        return key, _patterns(node, where, context, key)
    if key == "hardware_ids":
        ids = string_list(node, where, context, "hardware_ids")
        return key, None if ids is None else frozenset(i.casefold() for i in ids)
    return "enabled", _bool(node, where, context, "enabled")


def _parse_rule(node: yaml.Node, index: int, doc: str, where: Where) -> RuleEntry | None:
    context = _context(doc, index)
    items = mapping(node, where, context, _RULE_KEYS, ("name",))
    if items is None or "name" not in items:
        return None
    name = string(items["name"][1], where, context, "name")
    if name is None:
        return None
    context = _context(doc, index, name)
    if not _RULE_NAME.match(name):
        where.at(items["name"][1], context, "rule names are letters, digits, - and _", "security")
    values: dict[str, Any] = {}
    before = len(where.errors)
    for key, (_, value_node) in items.items():
        if key == "name":
            continue
        target, value = _rule_field(key, value_node, where, context)
        if value is not None:
            values[target] = value
    if len(where.errors) != before:
        return None
    _check_device_pins(values, items, where, context)
    if len(where.errors) != before:
        return None
    return RuleEntry(index, name, values, node)


def _check_device_pins(
    values: Mapping[str, Any], items: _Items, where: Where, context: str
) -> None:
    """Refuse hardware ids on a rule for software, and drivers mixed with software."""
    classes = values.get("classifications")
    if classes is None:
        return
    device = classes & DEVICE_CLASSIFICATIONS
    if "hardware_ids" in values and classes - DEVICE_CLASSIFICATIONS:
        where.at(
            items["hardware_ids"][1],
            context,
            "hardware_ids pin drivers and firmware only",
            "list only driver and/or firmware under classifications",
        )
    if device and classes - DEVICE_CLASSIFICATIONS:
        where.at(
            items["classifications"][1],
            context,
            f"{' and '.join(sorted(device))} are approved by rules of their own",
            "write one rule for driver/firmware and another for software",
        )


def _parse_rules(items: _Items, doc: str, where: Where, context: str) -> list[RuleEntry]:
    rules: list[RuleEntry] = []
    if "approval" not in items:
        return rules
    node = items["approval"][1]
    if not isinstance(node, yaml.SequenceNode):
        where.at(node, context, "approval must be a list of rules")
        return rules
    seen: dict[str, int] = {}
    for index, rule_node in enumerate(node.value, start=1):
        entry = _parse_rule(rule_node, index, doc, where)
        if entry is None:
            continue
        if entry.name in seen:
            where.at(
                rule_node,
                _context(doc, index, entry.name),
                f"duplicate rule name (approval {seen[entry.name]} has it)",
                "rename one",
            )
            continue
        seen[entry.name] = index
        rules.append(entry)
    return rules


# --- schedule -------------------------------------------------------------------------------


def _time_zone(node: yaml.Node, where: Where, context: str) -> str | None:
    text = string(node, where, context, "schedule.time_zone")
    if text is None or text == SITE_TIME_ZONE:
        return text
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        where.at(
            node,
            context,
            f"schedule.time_zone {text!r} is not a time zone",
            "write site (the agent's site's zone) or an IANA name such as Europe/Paris",
        )
        return None
    return text


def _schedule_when(items: _Items, where: Where, context: str) -> dict[str, Any] | None:
    """Return the cron or nth-weekday fields of a schedule (exactly one must be given)."""
    if ("cron" in items) == ("nth_weekday" in items):
        node = items["cron"][1] if "cron" in items else None
        where.at(
            node,
            context,
            "a schedule needs exactly one of cron or nth_weekday",
            'cron: "0 2 * * sat", or nth_weekday: {nth: 2, weekday: tuesday, offset_days: 3}',
        )
        return None
    if "cron" in items:
        text = string(items["cron"][1], where, context, "schedule.cron")
        return None if text is None else {"cron": text}
    node = items["nth_weekday"][1]
    nth_items = mapping(node, where, context, _NTH_KEYS, ("nth", "weekday"))
    if nth_items is None or "nth" not in nth_items or "weekday" not in nth_items:
        return None
    before = len(where.errors)
    nth_node = nth_items["nth"][1]
    nth = scalar(nth_node) if isinstance(nth_node, yaml.ScalarNode) else None
    if nth not in _NTH_WORDS or isinstance(nth, bool):
        where.at(nth_node, context, "nth_weekday.nth must be 1 to 5, or -1 for the last")
    weekday = _choice(nth_items["weekday"][1], where, context, "nth_weekday.weekday", WEEKDAYS)
    offset = 0.0
    if "offset_days" in nth_items:
        offset = _number(nth_items["offset_days"][1], where, context, "offset_days", 0, 27) or 0
        if offset != int(offset):
            where.at(nth_items["offset_days"][1], context, "offset_days must be whole days")
    time = "00:00"
    if "time" in nth_items:
        time_node = nth_items["time"][1]
        time = string(time_node, where, context, "nth_weekday.time") or "00:00"
        if not _TIME.match(time):
            where.at(time_node, context, f"time {time!r} is not HH:MM", 'quote it: "02:00"')
    if len(where.errors) != before:
        return None
    return {"nth": nth, "weekday": weekday, "offset_days": int(offset), "time": time}


def _parse_schedule(node: yaml.Node, where: Where, context: str) -> PatchSchedule | None:
    items = mapping(node, where, context, _SCHEDULE_KEYS, ("duration",))
    if items is None or "duration" not in items:
        return None
    before = len(where.errors)
    name = "window"
    if "name" in items:
        name = string(items["name"][1], where, context, "schedule.name") or name
    duration = parse_duration_node(items["duration"][1], where, context, "schedule.duration")
    if duration is not None and not 0 < duration <= _MAX_DURATION:
        where.at(items["duration"][1], context, "schedule.duration must be over 0 and at most 31d")
    zone = SITE_TIME_ZONE
    if "time_zone" in items:
        zone = _time_zone(items["time_zone"][1], where, context) or zone
    when = _schedule_when(items, where, context)
    if when is None or duration is None or len(where.errors) != before:
        return None
    schedule = PatchSchedule(name=name, duration_seconds=duration, time_zone=zone, **when)
    node_at = items["cron"][1] if "cron" in items else items["nth_weekday"][1]
    _check_fires(schedule, node_at, where, context)
    return schedule if len(where.errors) == before else None


def _check_fires(schedule: PatchSchedule, node: yaml.Node, where: Where, context: str) -> None:
    """Refuse a schedule APScheduler cannot read, or one that never fires (30 February)."""
    try:
        trigger = trigger_for(schedule, "UTC")  # the windows' own trigger: one reading of it
    except ConfigError as exc:
        where.at(node, context, f"schedule.cron: {exc}", "five fields: minute hour day month dow")
        return
    # Eight years hold every day-of-month and weekday combination, leap days included.
    start = datetime.now(UTC)
    fire = trigger.get_next_fire_time(None, start)
    if fire is None or fire - start > timedelta(days=8 * 366):
        where.at(
            node,
            context,
            f"schedule {schedule.describe()} never fires",
            "check the day of month and month (30 February does not exist)",
        )


# --- rings, reboot, scripts -----------------------------------------------------------------


def _parse_rings(node: yaml.Node, where: Where, context: str) -> tuple[Ring, ...] | None:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        where.at(node, context, "rings must be a non-empty list of {name, select, ...}")
        return None
    rings: list[Ring] = []
    names: set[str] = set()
    before = len(where.errors)
    for order, item in enumerate(node.value):
        items = mapping(item, where, context, _RING_KEYS, ("name", "select"))
        if items is None or "name" not in items or "select" not in items:
            continue
        name = string(items["name"][1], where, context, "rings.name") or "?"
        if name in names:
            where.at(items["name"][1], context, f"duplicate ring name {name!r}", "rename one")
        names.add(name)
        ring_context = f"{context}, ring {name!r}"
        selector = parse_scope(items["select"][1], where, ring_context)
        soak = 3600.0
        if "soak" in items:
            soak = parse_duration_node(items["soak"][1], where, ring_context, "soak") or 0.0
        flags = {
            key: _bool(items[key][1], where, ring_context, key)
            for key in ("require_reboot_report", "no_new_critical_alert")
            if key in items
        }
        if selector is None or any(v is None for v in flags.values()):
            continue
        rings.append(
            Ring(
                name=name,
                order=order,
                selector=selector,
                selector_text=_node_text(items["select"][1]),
                soak_seconds=soak,
                require_reboot_report=flags.get("require_reboot_report", True) is not False,
                no_new_critical_alert=flags.get("no_new_critical_alert", True) is not False,
            )
        )
    return tuple(rings) if len(where.errors) == before else None


def _node_text(node: yaml.Node) -> str:
    """Return a node's value as short flow-style text, for people."""
    try:
        return yaml.safe_dump(scalar(node), default_flow_style=True, width=1000).strip()
    except yaml.YAMLError:
        return "?"


def _parse_reboot(node: yaml.Node, where: Where, context: str) -> dict[str, tuple[Any, int]] | None:
    items = mapping(node, where, context, _REBOOT_KEYS)
    if items is None:
        return None
    out: dict[str, tuple[Any, int]] = {}
    for key, (key_node, value_node) in items.items():
        line = key_node.start_mark.line + 1
        value: Any
        if key == "mode":
            value = _choice(value_node, where, context, "reboot.mode", REBOOT_MODES)
        elif key == "consent":
            value = _choice(value_node, where, context, "reboot.consent", REBOOT_CONSENT)
        elif key == "max_deferrals":
            number = _number(value_node, where, context, "reboot.max_deferrals", 0, 100)
            value = None if number is None else int(number)
        else:
            value = parse_duration_node(value_node, where, context, "reboot.deferral")
        if value is not None:
            out[f"reboot.{key}"] = (value, line)
    return out


def _parse_scripts(
    node: yaml.Node, where: Where, context: str, what: str
) -> tuple[ScriptStep, ...] | None:
    if not isinstance(node, yaml.SequenceNode):
        where.at(node, context, f"{what} must be a list of {{script, args, timeout}}")
        return None
    steps: list[ScriptStep] = []
    before = len(where.errors)
    for item in node.value:
        items = mapping(item, where, context, _SCRIPT_KEYS, ("script",))
        if items is None or "script" not in items:
            continue
        script = string(items["script"][1], where, context, f"{what}.script")
        args: list[str] | None = []
        if "args" in items:
            args = string_list(items["args"][1], where, context, f"{what}.args")
        timeout: float | None = 600.0
        if "timeout" in items:
            timeout = parse_duration_node(items["timeout"][1], where, context, f"{what}.timeout")
        params: dict[str, str] | None = {}
        if "params" in items:
            params = _script_params(items["params"][1], where, context, f"{what}.params")
        if script is not None and args is not None and timeout is not None and params is not None:
            source = where.position(items["params"][1] if "params" in items else item)
            steps.append(ScriptStep(script, tuple(args), timeout, tuple(params.items()), source))
    return tuple(steps) if len(where.errors) == before else None


def _script_params(node: yaml.Node, where: Where, context: str, what: str) -> dict[str, str] | None:
    """Return a step's `params: {name: value}` as written (`5`, `true` and `"5"` alike are the
    text an operator types after `--param name=`); what each takes is checked against the
    script's header once the script library is known (AlertService._load_policies)."""
    if not isinstance(node, yaml.MappingNode):
        where.at(node, context, f"{what} must be a mapping of name: value", "e.g. {service: nginx}")
        return None
    out: dict[str, str] = {}
    ok = True
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str) or not key:
            where.at(key_node, context, f"{what}: names must be plain strings")
            ok = False
        elif key in out:
            where.at(key_node, context, f"{what}: duplicate parameter {key!r}", "keep one")
            ok = False
        elif not isinstance(value_node, yaml.ScalarNode):
            where.at(value_node, context, f"{what}.{key} must be a single value, not a list or map")
            ok = False
        else:
            out[key] = str(value_node.value)
    return out if ok else None


def _parse_setting(key: str, node: yaml.Node, where: Where, context: str) -> Any:
    """Return one replaced-whole setting's value, or None when it is wrong."""
    if key == "enabled":
        return _bool(node, where, context, "enabled")
    if key == "schedule":
        return _parse_schedule(node, where, context)
    if key == "rings":
        return _parse_rings(node, where, context)
    if key in ("pre_install", "post_install"):
        return _parse_scripts(node, where, context, key)
    value = parse_duration_node(node, where, context, "report_back")
    if value is not None and value <= 0:
        where.at(node, context, "report_back must be over 0", "e.g. 1h")
        return None
    return value


# --- documents ------------------------------------------------------------------------------


def parse_document(node: yaml.Node, path: str, where: Where, order: int) -> PatchDoc | None:
    """Parse one PatchPolicy document node; record errors and return None when it is wrong."""
    items = mapping(node, where, "", _TOP_KEYS, ("apiVersion", "kind", "metadata", "scope"))
    if items is None:
        return None
    doc_name, description = parse_metadata(items, where)
    context = _context(doc_name)
    if "apiVersion" in items and scalar(items["apiVersion"][1]) != API_VERSION:
        where.at(items["apiVersion"][1], context, "unsupported apiVersion", f"use {API_VERSION}")
    layer = parse_layer(items, where, context)
    scope = parse_scope(items["scope"][1], where, context) if "scope" in items else None
    check_layer_scope(items, layer, scope, where, context)
    settings: dict[str, tuple[Any, int]] = {}
    for key in SETTINGS:
        if key in items:
            key_node, value_node = items[key]
            value = _parse_setting(key, value_node, where, context)
            if value is not None:
                settings[key] = (value, key_node.start_mark.line + 1)
    if "reboot" in items:
        settings.update(_parse_reboot(items["reboot"][1], where, context) or {})
    rules = _parse_rules(items, doc_name, where, context)
    if not settings and not rules and "approval" not in items:
        where.at(node, context, "the document sets nothing", "add approval:, schedule:, ...")
    if scope is None or doc_name == "?":
        return None
    return PatchDoc(
        doc_name,
        description,
        layer,
        scope,
        path,
        node.start_mark.line + 1,
        order,
        settings,
        tuple(rules),
    )


def build(docs: list[PatchDoc], errors: list[str]) -> PatchPolicySet:
    """Check what spans documents (names, overrides, duplicates); return the set."""
    names: dict[str, PatchDoc] = {}
    definitions: dict[str, list[tuple[PatchDoc, RuleEntry]]] = {}
    out: list[PatchDoc] = []
    for doc in sorted(docs, key=lambda d: d.rank):
        where = Where(doc.path, errors)
        if doc.name in names:
            first = names[doc.name]
            where.at(
                None,
                _context(doc.name),
                f"line {doc.line}: duplicate patch policy name (also {first.path}:{first.line})",
                "rename one",
            )
        names[doc.name] = doc
        entries = [_mark_rule(doc, entry, definitions, where) for entry in doc.rules]
        out.append(replace(doc, rules=tuple(e for e in entries if e is not None)))
    return PatchPolicySet(out)


def _mark_rule(
    doc: PatchDoc,
    entry: RuleEntry,
    definitions: dict[str, list[tuple[PatchDoc, RuleEntry]]],
    where: Where,
) -> RuleEntry | None:
    """Return the entry marked as an override or recorded as a definition; None to drop it."""
    context = _context(doc.name, entry.index, entry.name)
    known = definitions.get(entry.name, [])
    higher = [(d, e) for d, e in known if LAYERS.index(d.layer) < LAYERS.index(doc.layer)]
    if higher:
        for base_doc, base in higher:
            merged = {**base.values, **entry.values}
            _check_merged(merged, entry, base_doc, base, where, context)
        return replace(entry, override=True)
    same = [(d, e) for d, e in known if d.layer == doc.layer and d.scope == doc.scope]
    if same:
        other_doc, other = same[0]
        where.at(
            entry.node,
            context,
            f"rule {entry.name!r} is defined twice for the same layer and scope "
            f"(also {line_of(other_doc.path, other.node)})",
            "rename one or narrow a scope",
        )
        return None
    if "classifications" not in entry.values:
        hint = "add classifications" + ("" if doc.layer == "global" else ", or correct the name")
        where.at(
            entry.node,
            context,
            "a rule must list its classifications"
            + ("" if doc.layer == "global" else f", and no higher layer defines {entry.name!r}"),
            hint,
        )
        return None
    definitions.setdefault(entry.name, []).append((doc, entry))
    return entry


def _check_merged(
    merged: Mapping[str, Any],
    entry: RuleEntry,
    base_doc: PatchDoc,
    base: RuleEntry,
    where: Where,
    context: str,
) -> None:
    """Refuse an override that would put hardware ids on a rule for software."""
    classes = merged.get("classifications", frozenset())
    if merged.get("hardware_ids") and classes - DEVICE_CLASSIFICATIONS:
        where.at(
            entry.node,
            context,
            f"with the rule it overrides ({line_of(base_doc.path, base.node)}), hardware_ids "
            "would pin a rule for software",
            "pin only rules for driver and/or firmware",
        )
    device = classes & DEVICE_CLASSIFICATIONS
    if device and classes - DEVICE_CLASSIFICATIONS:
        where.at(
            entry.node,
            context,
            f"with the rule it overrides ({line_of(base_doc.path, base.node)}), one rule would "
            "approve drivers or firmware and software together",
            "keep driver/firmware rules apart",
        )


def _rule_provenance(entry: RuleEntry, doc: PatchDoc, rule_key: str) -> list[Provenance]:
    source = f"{doc.path}:{entry.node.start_mark.line + 1}"
    return [
        Provenance(f"approval.{rule_key}.{_FIELD_WORD.get(k, k)}", source, doc.layer, doc.name)
        for k in entry.values
    ]


_FIELD_WORD = {"min_age_seconds": "min_age_days"}


@dataclass
class _Merge:
    """The settings of one agent while documents are applied."""

    values: dict[str, Any] = field(default_factory=dict)
    provenance: list[Provenance] = field(default_factory=list)
    rules: dict[str, tuple[ApprovalRule, bool]] = field(default_factory=dict)
    by_name: dict[str, list[str]] = field(default_factory=dict)


class PatchPolicySet:
    """A validated set of PatchPolicy documents (loaded with the alert policies)."""

    def __init__(self, docs: Sequence[PatchDoc]) -> None:
        self._docs = tuple(sorted(docs, key=lambda d: d.rank))
        self._lock = threading.Lock()
        self._cache: dict[tuple[Any, ...], PatchSettings] = {}
        self._shared: dict[tuple[int, ...], PatchSettings] = {}
        # Equal rule tuples are one object, so approval's compiled rules are shared by agents.
        self._interned: dict[tuple[ApprovalRule, ...], tuple[ApprovalRule, ...]] = {}

    @property
    def policies(self) -> tuple[str, ...]:
        """Return the patch policy names, in the order they apply."""
        return tuple(d.name for d in self._docs)

    def __len__(self) -> int:
        return len(self._docs)

    def library_scripts(self) -> list[tuple[str, str]]:
        """Return (file:line, script name) of every pre_install / post_install step."""
        found: list[tuple[str, str]] = []
        for doc in self._docs:
            for key in ("pre_install", "post_install"):
                steps, line = doc.settings.get(key, ((), 0))
                found += [(f"{doc.path}:{line}", step.script) for step in steps]
        return found

    def script_steps(self) -> list[tuple[str, ScriptStep]]:
        """Return (pre_install or post_install, step) of every script step, each step knowing
        its file:line:col, for checking their parameters against the script library."""
        found: list[tuple[str, ScriptStep]] = []
        for doc in self._docs:
            for key in ("pre_install", "post_install"):
                steps, _line = doc.settings.get(key, ((), 0))
                found += [(key, step) for step in steps]
        return found

    def settings_for(self, agent: AgentContext) -> PatchSettings:
        """Return the agent's effective patch settings, with who set each (cached)."""
        key = (agent.agent_id, agent.hostname, agent.client, agent.site, agent.tags, agent.os)
        found = self._cache.get(key)
        if found is not None:
            return found
        # Agents under the same documents share everything but their id and ring: merge once.
        matched = tuple(i for i, doc in enumerate(self._docs) if doc.scope.matches(agent))
        shared = self._shared.get(matched)
        if shared is None:
            shared = self._settings(agent, self._merge(agent))
            with self._lock:
                if len(self._shared) >= _CACHE_LIMIT:
                    self._shared.clear()
                self._shared[matched] = shared
        ring = next((r for r in shared.rings if r.selector.matches(agent)), None)
        settings = replace(shared, agent_id=agent.agent_id, ring=ring)
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = settings
        return settings

    def _merge(self, agent: AgentContext) -> _Merge:
        merge = _Merge()
        for doc in self._docs:
            if doc.scope.matches(agent):
                self._apply(doc, merge)
        return merge

    @staticmethod
    def _apply(doc: PatchDoc, merge: _Merge) -> None:
        for name, (value, line) in doc.settings.items():
            merge.values[name] = value
            merge.provenance.append(Provenance(name, f"{doc.path}:{line}", doc.layer, doc.name))
        for entry in doc.rules:
            if entry.override:
                for rule_key in merge.by_name.get(entry.name, []):
                    merge.rules[rule_key] = entry.apply(*merge.rules[rule_key])
                    merge.provenance += _rule_provenance(entry, doc, rule_key)
                continue
            rule_key = f"{doc.name}/{entry.name}"
            base = ApprovalRule(
                name=entry.name,
                policy=doc.name,
                source=f"{doc.path}:{entry.node.start_mark.line + 1}",
                layer=doc.layer,
            )
            merge.rules[rule_key] = entry.apply(base, True)
            merge.provenance += _rule_provenance(entry, doc, rule_key)
            merge.by_name.setdefault(entry.name, []).append(rule_key)

    def _settings(self, agent: AgentContext, merge: _Merge) -> PatchSettings:
        values = merge.values
        reboot = RebootPolicy()
        reboot = replace(
            reboot,
            mode=values.get("reboot.mode", reboot.mode),
            consent=values.get("reboot.consent", reboot.consent),
            max_deferrals=values.get("reboot.max_deferrals", reboot.max_deferrals),
            deferral_seconds=values.get("reboot.deferral", reboot.deferral_seconds),
        )
        rules = tuple(rule for rule, enabled in merge.rules.values() if enabled)
        with self._lock:
            rules = self._interned.setdefault(rules, rules)
        rings: tuple[Ring, ...] = values.get("rings", ())
        return PatchSettings(
            agent_id=agent.agent_id,
            enabled=values.get("enabled", True),
            rules=rules,
            schedule=values.get("schedule"),
            ring=next((ring for ring in rings if ring.selector.matches(agent)), None),
            rings=rings,
            reboot=reboot,
            pre_install=values.get("pre_install", ()),
            post_install=values.get("post_install", ()),
            report_back_seconds=values.get("report_back", 3600.0),
            provenance=tuple(merge.provenance),
        )

    def explain(self, agent: AgentContext) -> list[tuple[str, str, list[Provenance]]]:
        """Return (setting, value as text, who set it) for every patch setting of `agent`.

        A setting no document set shows its default with no source; an approval rule lists
        its definition and every override's fields; disabled rules are listed as such.
        """
        settings = self.settings_for(agent)
        rows: list[tuple[str, str, list[Provenance]]] = []
        for name, text in describe_settings(settings):
            if name.startswith("approval."):
                continue
            by = settings.set_by("rings" if name == "ring" else name)
            rows.append((name, text, [by] if by else []))
        for rule_key, (rule, enabled) in self._merge(agent).rules.items():
            prefix = f"approval.{rule_key}."
            sources = [p for p in settings.provenance if p.field.startswith(prefix)]
            text = describe_rule(rule) if enabled else "disabled: " + describe_rule(rule)
            rows.append((f"approval.{rule_key}", text, sources))
        return rows


def describe_rule(rule: ApprovalRule) -> str:
    """Return an approval rule in one line, for people."""
    parts = [rule.action, ",".join(sorted(rule.classifications)) or "-"]
    if rule.severities:
        parts.append("severity " + ",".join(sorted(rule.severities)))
    if rule.min_age_seconds:
        parts.append(f"after {rule.min_age_seconds / _DAY:g} days")
    if rule.include:
        parts.append("include " + ", ".join(str(p) for p in rule.include))
    if rule.exclude:
        parts.append("exclude " + ", ".join(str(p) for p in rule.exclude))
    if rule.hardware_ids:
        parts.append("hardware " + ", ".join(sorted(rule.hardware_ids)))
    return " ".join(parts)


def describe_settings(settings: PatchSettings) -> list[tuple[str, str]]:
    """Return (setting, value as text) for every setting of `settings`, rules included."""
    schedule = settings.schedule
    rows = [
        ("enabled", "true" if settings.enabled else "false"),
        ("schedule", schedule.describe() if schedule else "none (installs only on demand)"),
        ("rings", ", ".join(r.name for r in settings.rings) or "none (one ring: every agent)"),
        ("ring", settings.ring.name if settings.ring else "-"),
        ("reboot.mode", settings.reboot.mode),
        ("reboot.consent", settings.reboot.consent),
        ("reboot.max_deferrals", str(settings.reboot.max_deferrals)),
        ("reboot.deferral", f"{settings.reboot.deferral_seconds:g}s"),
        ("pre_install", ", ".join(s.script for s in settings.pre_install) or "-"),
        ("post_install", ", ".join(s.script for s in settings.post_install) or "-"),
        ("report_back", f"{settings.report_back_seconds:g}s"),
    ]
    for rule in settings.rules:
        rows.append((f"approval.{rule.policy}/{rule.name}", describe_rule(rule)))
    return rows


# Read by rmm_server/policy/policyset.py: PatchPolicy documents load with the alert policies.
PATCH_KIND = DocumentKind(parse=parse_document, build=build)
KINDS: Mapping[str, DocumentKind] = {KIND: PATCH_KIND}
