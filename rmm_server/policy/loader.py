"""Load AlertPolicy documents strictly: every problem is collected with file:line:col."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from rmm_common.agent_words import AGENT_ID_DIGITS, WordKind, parse_agent_word
from rmm_common.durations import parse_duration
from rmm_common.errors import InvalidArgument, PolicyError
from rmm_common.metric_catalog import MetricSpec
from rmm_common.metric_catalog import catalog as agent_catalog
from rmm_common.yamlnodes import (
    Unreadable,
    Where,
    compose_documents,
    line_of,
    mapping,
    scalar,
    string,
    string_list,
    string_map,
)
from rmm_server.policy import expressions
from rmm_server.policy.model import (
    CONSENT_MODES,
    INHIBIT_EQUAL,
    LAYERS,
    SEVERITIES,
    TIERS,
    AgentContext,
    Inhibit,
    Matcher,
    Remediate,
)
from rmm_server.policy.templates import Template, parse_template

API_VERSION = "rmm/v1"
KIND = "AlertPolicy"
# Other kinds read from the same files beside alert policies, each by its own parser (load_all).
OTHER_KINDS = ("PatchPolicy",)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_RULE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_TOP_KEYS = ("apiVersion", "kind", "metadata", "layer", "scope", "consent", "rules")
_SCOPE_KEYS = ("all", "clients", "sites", "tags", "os", "agents", "exclude")
_SCOPE_LISTS = ("clients", "sites", "tags", "os", "agents")
# A mapping node's items by key, as yamlnodes.mapping returns them.
_Items = dict[str, tuple[yaml.Node, yaml.Node]]
_RULE_KEYS = (
    "name",
    "expr",
    "clear",
    "value",
    "for",
    "keep_firing_for",
    "severity",
    "tier",
    "labels",
    "annotations",
    "match",
    "inhibits",
    "remediate",
    "enabled",
    "params",
    "ticket",
)
# Names every template may use besides the series labels and params.<name>.
TEMPLATE_NAMES = (
    "agent",
    "hostname",
    "client",
    "site",
    "os",
    "rule",
    "severity",
    "value",
    "inventory_added",
    "inventory_removed",
)
# Labels the server puts on every alert; a rule must not set them itself.
RESERVED_LABELS = frozenset({"agent", "client", "site", "rule", "severity", "tier"})


@dataclass(frozen=True)
class Scope:
    """Which agents a document applies to; include lists are ANDed, exclude lists ORed."""

    all: bool = False
    clients: frozenset[str] = frozenset()
    sites: frozenset[str] = frozenset()  # "client/site"
    tags: frozenset[str] = frozenset()  # the agent must carry every one
    os: frozenset[str] = frozenset()
    # Agents by whole id (lowercase), and by hostname (casefolded; what the agent reports, so
    # only inside a scope pinned to clients or sites: see _split_agents).
    agents: frozenset[str] = frozenset()
    agent_hosts: frozenset[str] = frozenset()
    exclude_clients: frozenset[str] = frozenset()
    exclude_sites: frozenset[str] = frozenset()
    exclude_tags: frozenset[str] = frozenset()  # any one excludes
    exclude_os: frozenset[str] = frozenset()
    exclude_agents: frozenset[str] = frozenset()
    exclude_agent_hosts: frozenset[str] = frozenset()

    def matches(self, agent: AgentContext) -> bool:
        """Return whether `agent` is inside this scope."""
        site = f"{agent.client}/{agent.site}"
        agent_id, host = agent.agent_id.lower(), agent.hostname.casefold()
        if (
            agent.client in self.exclude_clients
            or site in self.exclude_sites
            or agent.os in self.exclude_os
            or agent_id in self.exclude_agents
            or host in self.exclude_agent_hosts
            or not self.exclude_tags.isdisjoint(agent.tags)
        ):
            return False
        return (
            (not self.clients or agent.client in self.clients)
            and (not self.sites or site in self.sites)
            and self.tags <= agent.tags
            and (not self.os or agent.os in self.os)
            and (
                not (self.agents or self.agent_hosts)
                or agent_id in self.agents
                or host in self.agent_hosts
            )
        )


@dataclass(frozen=True)
class RuleSpec:
    """A rule's complete settings (a definition, or a definition with overrides applied)."""

    name: str
    expr: str = ""
    clear: str | None = None
    value: str | None = None
    for_seconds: float = 0.0
    keep_firing_for_seconds: float = 0.0
    severity: str = "warning"
    tier: str = "L1"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, Template] = field(default_factory=dict)
    match: tuple[Matcher, ...] = ()
    inhibits: tuple[Inhibit, ...] = ()
    remediate: Remediate | None = None
    enabled: bool = True
    params: Mapping[str, Any] = field(default_factory=dict)
    # The tier at which a firing alert of this rule opens a ticket (docs/desk.md); "": none.
    ticket: str = ""


# Fields merged key by key; every other field given by an override replaces the old value.
MERGED_FIELDS = ("labels", "annotations", "params")
_SPEC_FIELD = {"for": "for_seconds", "keep_firing_for": "keep_firing_for_seconds"}


@dataclass(frozen=True)
class RuleEntry:
    """One entry of a document's `rules:` list, with the fields it gives."""

    ordinal: int  # unique in the set: fixes application order and cache keys
    index: int  # 1-based position in its document
    name: str
    values: Mapping[str, Any]  # spec field name -> value, only the fields given
    nodes: Mapping[str, yaml.Node]  # spec field name -> node, for errors
    node: yaml.Node
    override: bool = False

    def apply(self, spec: RuleSpec) -> RuleSpec:
        """Return `spec` with this entry's fields laid over it."""
        changes: dict[str, Any] = {}
        for name, value in self.values.items():
            if name in MERGED_FIELDS:
                changes[name] = {**getattr(spec, name), **value}
            else:
                changes[name] = value
        return replace(spec, **changes)


@dataclass(frozen=True)
class PolicyDoc:
    """One AlertPolicy document."""

    name: str
    description: str
    layer: str
    scope: Scope
    rules: tuple[RuleEntry, ...]
    path: str
    line: int
    order: int
    consent: str | None = None  # one of CONSENT_MODES when the document sets it
    consent_line: int = 0  # line of the `consent:` key, for explain

    @property
    def rank(self) -> tuple[int, int]:
        """Return the order documents apply in: by layer, then by file and position."""
        return LAYERS.index(self.layer), self.order


def _context(doc_name: str, index: int | None = None, rule: str | None = None) -> str:
    text = f'policy "{doc_name}"'
    if index is not None:
        text += f", rule {index}" + (f' "{rule}"' if rule else "")
    return text


def parse_matchers(node: yaml.Node, where: Where, context: str) -> tuple[Matcher, ...] | None:
    """Parse `{label: "value" | "!=value" | "=~regex" | "!~regex"}` into matchers."""
    raw = string_map(node, where, context, "match")
    if raw is None:
        return None
    out: list[Matcher] = []
    for label, text in raw.items():
        for op in ("=~", "!~", "!=", "="):
            if text.startswith(op):
                value = text[len(op) :]
                break
        else:
            op, value = "=", text
        pattern = None
        if op in ("=~", "!~"):
            try:
                pattern = re.compile(value)
            except re.error as exc:
                where.at(node, context, f"match.{label}: bad regular expression: {exc}")
                return None
        out.append(Matcher(label, op, value, pattern))
    return tuple(out)


def _duration(node: yaml.Node, where: Where, context: str, what: str) -> float | None:
    value = scalar(node) if isinstance(node, yaml.ScalarNode) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except InvalidArgument as exc:
            where.at(node, context, f"{what}: {exc}")
            return None
    where.at(node, context, f"{what} must be a duration", "e.g. 30s, 10m, 2h, 7d")
    return None


def _parse_inhibits(node: yaml.Node, where: Where, context: str) -> tuple[Inhibit, ...] | None:
    if not isinstance(node, yaml.SequenceNode):
        where.at(node, context, "inhibits must be a list of {rules, equal, match}")
        return None
    out: list[Inhibit] = []
    for item in node.value:
        items = mapping(item, where, context, ("rules", "equal", "match"), ("rules",))
        if items is None or "rules" not in items:
            return None
        rules = string_list(items["rules"][1], where, context, "inhibits.rules")
        equal: list[str] | None = ["agent"]
        if "equal" in items:
            equal = string_list(items["equal"][1], where, context, "inhibits.equal")
            for key in equal or []:
                if key not in INHIBIT_EQUAL and not _IDENT.match(key):
                    where.at(
                        items["equal"][1],
                        context,
                        f"inhibits.equal: {key!r} is not a label name",
                        f"use {', '.join(INHIBIT_EQUAL)} or a series label such as mountpoint",
                    )
                    equal = None
                    break
        matchers: tuple[Matcher, ...] | None = ()
        if "match" in items:
            matchers = parse_matchers(items["match"][1], where, context)
        if rules is None or equal is None or matchers is None:
            return None
        out.append(Inhibit(tuple(rules), tuple(equal), matchers))
    return tuple(out)


def _rule_string(node: yaml.Node, where: Where, context: str, key: str) -> Any:
    return string(node, where, context, key)


def _rule_duration(node: yaml.Node, where: Where, context: str, key: str) -> Any:
    return _duration(node, where, context, key)


def _rule_choice(node: yaml.Node, where: Where, context: str, key: str) -> Any:
    """Return severity or tier when it is one of its known values."""
    value = string(node, where, context, key)
    allowed = SEVERITIES if key == "severity" else TIERS
    if value is not None and value not in allowed:
        where.at(node, context, f"{key} {value!r} is unknown", f"use {'|'.join(allowed)}")
        return None
    return value


def _rule_ticket(node: yaml.Node, where: Where, context: str, key: str) -> Any:
    """Return the tier a rule's alerts open tickets at: L1, L2 or L3 ("none": no ticket)."""
    value = string(node, where, context, key)
    if value == "none":
        return ""
    if value is not None and value not in TIERS:
        where.at(
            node,
            context,
            f"ticket {value!r} is not a tier",
            f"use {'|'.join(TIERS)} to open a ticket at that tier, or none",
        )
        return None
    return value


def _rule_labels(node: yaml.Node, where: Where, context: str, key: str) -> Any:
    value = string_map(node, where, context, "labels")
    for label in value or {}:
        if not _IDENT.match(label) or label in RESERVED_LABELS:
            where.at(
                node,
                context,
                f"label {label!r} is invalid or reserved",
                f"use [a-z_][a-z0-9_]*, not {', '.join(sorted(RESERVED_LABELS))}",
            )
    return value


def _rule_annotations(node: yaml.Node, where: Where, context: str, key: str) -> Any:
    raw = string_map(node, where, context, "annotations")
    if raw is None:
        return None
    value = {}
    for annotation, text in raw.items():
        template, problems = parse_template(text)
        for problem in problems:
            where.at(node, context, f"annotations.{annotation}: {problem}")
        value[annotation] = template
    return value


def _rule_match(node: yaml.Node, where: Where, context: str, key: str) -> Any:
    return parse_matchers(node, where, context)


def _rule_inhibits(node: yaml.Node, where: Where, context: str, key: str) -> Any:
    return _parse_inhibits(node, where, context)


def _rule_remediate(node: yaml.Node, where: Where, context: str, key: str) -> Any:
    remediate = mapping(node, where, context, ("script", "args", "interval"), ("script",))
    if remediate is None or "script" not in remediate:
        return None
    script = string(remediate["script"][1], where, context, "remediate.script")
    args: list[str] | None = []
    if "args" in remediate:
        args = string_list(remediate["args"][1], where, context, "remediate.args")
    interval: float | None = 3600.0
    if "interval" in remediate:
        interval = _duration(remediate["interval"][1], where, context, "remediate.interval")
    if script is not None and args is not None and interval is not None:
        return Remediate(script, tuple(args), interval)
    return None


def _rule_enabled(node: yaml.Node, where: Where, context: str, key: str) -> Any:
    value = scalar(node) if isinstance(node, yaml.ScalarNode) else None
    if not isinstance(value, bool):
        where.at(node, context, "enabled must be true or false")
        return None
    return value


def _rule_params(node: yaml.Node, where: Where, context: str, key: str) -> Any:
    return _parse_params(node, where, context)


# One parser per rule key: (value node, where, context, key) -> the value, or None when wrong.
_RULE_VALUE_PARSERS: dict[str, Callable[[yaml.Node, Where, str, str], Any]] = {
    "expr": _rule_string,
    "clear": _rule_string,
    "value": _rule_string,
    "for": _rule_duration,
    "keep_firing_for": _rule_duration,
    "severity": _rule_choice,
    "tier": _rule_choice,
    "labels": _rule_labels,
    "annotations": _rule_annotations,
    "match": _rule_match,
    "inhibits": _rule_inhibits,
    "remediate": _rule_remediate,
    "enabled": _rule_enabled,
    "params": _rule_params,
    "ticket": _rule_ticket,
}


def _parse_rule(
    node: yaml.Node, index: int, doc_name: str, where: Where, ordinal: int
) -> RuleEntry | None:
    context = _context(doc_name, index)
    items = mapping(node, where, context, _RULE_KEYS, ("name",))
    if items is None or "name" not in items:
        return None
    name = string(items["name"][1], where, context, "name")
    if name is None:
        return None
    context = _context(doc_name, index, name)
    if not _RULE_NAME.match(name):
        where.at(items["name"][1], context, "rule names are letters, digits and _", "DiskLow")
    values: dict[str, Any] = {}
    nodes: dict[str, yaml.Node] = {}
    errors_before = len(where.errors)
    for key, (_, value_node) in items.items():
        if key == "name":
            continue
        target = _SPEC_FIELD.get(key, key)
        nodes[target] = value_node
        parse_value = _RULE_VALUE_PARSERS.get(key)
        value = parse_value(value_node, where, context, key) if parse_value else None
        if value is not None:
            values[target] = value
    if len(where.errors) != errors_before:
        return None
    return RuleEntry(ordinal, index, name, values, nodes, node)


def _parse_params(node: yaml.Node, where: Where, context: str) -> dict[str, Any] | None:
    if not isinstance(node, yaml.MappingNode):
        where.at(node, context, "params must be a mapping of name: value")
        return None
    raw = scalar(node)
    out: dict[str, Any] = {}
    for (key_node, value_node), (key, value) in zip(node.value, raw.items(), strict=False):
        if not isinstance(key, str) or not _IDENT.match(key):
            where.at(key_node, context, f"param name {key!r} must match [a-z_][a-z0-9_]*")
            continue
        problem = expressions.param_problem(value)
        if problem is not None:
            where.at(value_node, context, f"params.{key} {problem}")
            continue
        # CEL never mixes int and double: every number becomes a double.
        out[key] = [_as_double(v) for v in value] if isinstance(value, list) else _as_double(value)
    return out


def _as_double(value: Any) -> Any:
    """Return ints as floats, anything else unchanged."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _parse_scope(node: yaml.Node, where: Where, context: str) -> Scope | None:
    items = mapping(node, where, context, _SCOPE_KEYS)
    if items is None:
        return None
    if not items:
        where.at(
            node, context, "an empty scope is refused", "write `scope: {all: true}` for every agent"
        )
        return None
    lists: dict[str, frozenset[str]] = {}
    every = False
    for key, (_, value_node) in items.items():
        if key == "all":
            every = scalar(value_node) is True
            if not every:
                where.at(value_node, context, "scope.all can only be true", "remove it")
        elif key == "exclude":
            _scope_exclude(value_node, where, context, lists)
        else:
            _scope_include(key, value_node, where, context, lists)
    _check_scope(node, items, where, context, lists, every)
    return Scope(all=every, **lists)


def _scope_exclude(
    node: yaml.Node, where: Where, context: str, lists: dict[str, frozenset[str]]
) -> None:
    """Add scope.exclude's lists to `lists` as exclude_<name>."""
    excluded = mapping(node, where, context + ", scope.exclude", _SCOPE_LISTS)
    for name, (_, list_node) in (excluded or {}).items():
        values = string_list(list_node, where, context, f"scope.exclude.{name}")
        lists["exclude_" + name] = frozenset(values or ())
        if name == "agents":
            ids, hosts = _split_agents(values or [], list_node, where, context)
            lists["exclude_agents"], lists["exclude_agent_hosts"] = ids, hosts


def _scope_include(
    key: str, node: yaml.Node, where: Where, context: str, lists: dict[str, frozenset[str]]
) -> None:
    """Add one include list (scope.clients, .sites, ...) to `lists`."""
    values = string_list(node, where, context, f"scope.{key}")
    lists[key] = frozenset(values or ())
    if key == "agents":
        lists["agents"], lists["agent_hosts"] = _split_agents(values or [], node, where, context)
    if key == "sites":
        for site in values or []:
            if site.count("/") != 1:
                where.at(
                    node,
                    context,
                    f"site {site!r} must name its client",
                    "write client/site, e.g. acme/hq",
                )


def _check_scope(
    node: yaml.Node,
    items: _Items,
    where: Where,
    context: str,
    lists: dict[str, frozenset[str]],
    every: bool,
) -> None:
    """Report what the scope's lists say together: bad exclusions, pins, contradictions."""
    for site in lists.get("exclude_sites", frozenset()):
        if site.count("/") != 1:
            where.at(node, context, f"excluded site {site!r} must name its client", "client/site")
    if lists.get("agent_hosts") and not (lists.get("clients") or lists.get("sites")):
        where.at(
            items["agents"][1],
            context,
            f"scope.agents names the hostname {sorted(lists['agent_hosts'])[0]!r}, which an "
            "agent of any client can report of itself",
            "pin the scope with clients: (or sites:), or name the agent by its id",
        )
    has_include = any(lists.get(k) for k in (*_SCOPE_LISTS, "agent_hosts"))
    if every and has_include:
        where.at(node, context, "scope.all with include lists is contradictory", "drop one")
    if not every and not has_include:
        where.at(node, context, "scope includes nothing", "add `all: true` or include lists")


def _split_agents(
    values: list[str], node: yaml.Node, where: Where, context: str
) -> tuple[frozenset[str], frozenset[str]]:
    """Return scope.agents entries as (whole ids, casefolded hostnames); report bad entries.

    As on the command line (rmm_common.agent_words): a word of hex digits is an agent id and
    never a hostname, so an agent cannot enter another's policy by naming itself after its id;
    it must be the whole id here (a policy outlives the agents it names); a hostname is any
    other word, or host=NAME.
    """
    ids: set[str] = set()
    hosts: set[str] = set()
    for value in values:
        try:
            word = parse_agent_word(value)
        except InvalidArgument as exc:
            where.at(node, context, f"scope agent {value!r}: {exc}", "write an id or host=NAME")
            continue
        if word.kind is WordKind.HOST:
            hosts.add(word.value.casefold())
        elif len(word.value) != AGENT_ID_DIGITS:
            where.at(
                node,
                context,
                f"scope agent {value!r} is not a whole agent id ({AGENT_ID_DIGITS} hex digits)",
                f"give the whole id (rmm agents list), or write host={value} for a hostname",
            )
        else:
            ids.add(word.value)
    return frozenset(ids), frozenset(hosts)


def _peek_name(node: yaml.Node) -> str | None:
    """Return a rule node's name even when the rest of it is wrong (for duplicate checks)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if getattr(key_node, "value", None) == "name" and isinstance(
                value_node, yaml.ScalarNode
            ):
                return str(value_node.value)
    return None


_LAYER_NEEDS = {"client": "clients", "site": "sites", "agent": "agents"}


def parse_document(
    node: yaml.Node, path: str, where: Where, order: int, ordinal_start: int
) -> PolicyDoc | None:
    """Parse one document node; record errors and return None when it is wrong."""
    items = mapping(node, where, "", _TOP_KEYS, ("apiVersion", "kind", "metadata", "scope"))
    if items is None:
        return None
    if "rules" not in items and "consent" not in items:
        # A document may set only the consent mode of its scope; otherwise it needs rules.
        where.at(node, "", "missing required key 'rules'", "or set consent: only")
    doc_name, description = _parse_metadata(items, where)
    context = _context(doc_name)
    _check_header(items, where, context)
    layer = _parse_layer(items, where, context)
    scope = _parse_scope(items["scope"][1], where, context) if "scope" in items else None
    _check_layer_scope(items, layer, scope, where, context)
    rules = _parse_rules(items, doc_name, where, context, ordinal_start)
    consent = _parse_consent(items, where, context)
    if scope is None or doc_name == "?":
        return None
    return PolicyDoc(
        doc_name,
        description,
        layer,
        scope,
        tuple(rules),
        path,
        node.start_mark.line + 1,
        order,
        consent,
        items["consent"][0].start_mark.line + 1 if consent else 0,
    )


def _parse_metadata(items: _Items, where: Where) -> tuple[str, str]:
    """Return the document's (name, description); the name is "?" when missing or wrong."""
    doc_name = "?"
    description = ""
    if "metadata" not in items:
        return doc_name, description
    meta = mapping(items["metadata"][1], where, "metadata", ("name", "description"), ("name",))
    if meta and "name" in meta:
        doc_name = string(meta["name"][1], where, "metadata", "metadata.name") or "?"
        if doc_name != "?" and not _NAME.match(doc_name):
            where.at(
                meta["name"][1],
                "metadata",
                f"policy name {doc_name!r} is invalid",
                "use letters, digits, - _ .",
            )
    if meta and "description" in meta:
        description = string(meta["description"][1], where, "metadata", "description") or ""
    return doc_name, description


def _check_header(items: _Items, where: Where, context: str) -> None:
    """Report an apiVersion or kind this loader does not read."""
    if "apiVersion" in items and scalar(items["apiVersion"][1]) != API_VERSION:
        where.at(items["apiVersion"][1], context, "unsupported apiVersion", f"use {API_VERSION}")
    if "kind" in items and scalar(items["kind"][1]) != KIND:
        where.at(
            items["kind"][1],
            context,
            f"unsupported kind {scalar(items['kind'][1])!r}",
            f"use {KIND}" + "".join(f" or {other}" for other in OTHER_KINDS),
        )


def _parse_layer(items: _Items, where: Where, context: str) -> str:
    """Return the document's layer (global when missing or unknown)."""
    if "layer" not in items:
        return "global"
    layer = str(scalar(items["layer"][1]))
    if layer not in LAYERS:
        where.at(items["layer"][1], context, f"unknown layer {layer!r}", f"use {'|'.join(LAYERS)}")
        return "global"
    return layer


def _check_layer_scope(
    items: _Items, layer: str, scope: Scope | None, where: Where, context: str
) -> None:
    """Report a client, site or agent layer whose scope does not list what it belongs to."""
    needed = _LAYER_NEEDS.get(layer)
    if (
        scope is not None
        and needed
        and not getattr(scope, needed)
        and not (needed == "agents" and scope.agent_hosts)
    ):
        where.at(
            items["scope"][1],
            context,
            f"a {layer}-layer policy must list scope.{needed}",
            f"name the {needed} it belongs to, or use layer: global",
        )


def _parse_rules(
    items: _Items, doc_name: str, where: Where, context: str, ordinal_start: int
) -> list[RuleEntry]:
    """Return the document's well-formed rules; report duplicate names and bad rules."""
    rules: list[RuleEntry] = []
    if "rules" not in items:
        return rules
    rules_node = items["rules"][1]
    if not isinstance(rules_node, yaml.SequenceNode) or not rules_node.value:
        where.at(rules_node, context, "rules must be a non-empty list")
        return rules
    seen: dict[str, int] = {}
    for index, rule_node in enumerate(rules_node.value, start=1):
        name = _peek_name(rule_node)
        if name is not None and name in seen:
            where.at(
                rule_node,
                _context(doc_name, index, name),
                f"duplicate rule name (rule {seen[name]} has it)",
                "rename one",
            )
            continue
        if name is not None:
            seen[name] = index
        entry = _parse_rule(rule_node, index, doc_name, where, ordinal_start + index)
        if entry is not None:
            rules.append(entry)
    return rules


def _parse_consent(items: _Items, where: Where, context: str) -> str | None:
    """Return the document's consent mode, or None when it sets none or a wrong one."""
    if "consent" not in items:
        return None
    consent_node = items["consent"][1]
    value = scalar(consent_node) if isinstance(consent_node, yaml.ScalarNode) else None
    if isinstance(value, str) and value in CONSENT_MODES:
        return value
    shown = repr(value) if isinstance(consent_node, yaml.ScalarNode) else "a collection"
    where.at(
        consent_node,
        context,
        f"consent must be one of {'|'.join(CONSENT_MODES)}, got {shown}",
        "unattended for servers, notify or ask for workstations; see docs/consent.md",
    )
    return None


@dataclass(frozen=True)
class Plan:
    """A compiled rule: CEL programs and what its context needs."""

    program: Any
    clear_program: Any | None
    value_program: Any | None
    driver: str | None  # the labelled metric the rule runs once per series of
    joined: tuple[str, ...]  # other labelled metrics, joined on identical labels
    scalars: tuple[str, ...]  # unlabelled metrics (all must be present)
    series_labels: tuple[str, ...]
    uses_labels: bool
    agent_fields: frozenset[str]
    uses_inventory: bool
    templates: Mapping[str, Template]


def check_spec(
    spec: RuleSpec,
    catalog: Mapping[str, MetricSpec],
    report: Any,
) -> Plan | None:
    """Check a complete rule and compile it; `report(field, reason, fix)` records problems."""
    if not spec.expr:
        report("expr", "the rule has no expr", "add expr: a CEL condition")
        return None
    sources = {"expr": spec.expr, "clear": spec.clear, "value": spec.value}
    refs = _analyse_sources(sources, spec, catalog, report)
    if refs is None:
        return None
    metrics: list[str] = []
    for found in refs.values():
        metrics += [m for m in found.metrics if m not in metrics]
    shape = _series_shape(metrics, catalog, report)
    if shape is None:
        return None
    labelled, scalars, series_labels = shape
    uses_labels = any("labels" in f.builtins for f in refs.values())
    if not _check_names(spec, refs, series_labels, report):
        return None
    programs = _compile_sources(sources, spec, metrics, series_labels, report)
    if programs is None:
        return None
    agent_fields = frozenset(f for found in refs.values() for f in found.agent_fields)
    return Plan(
        program=programs["expr"],
        clear_program=programs.get("clear"),
        value_program=programs.get("value"),
        driver=labelled[0] if labelled else None,
        joined=tuple(labelled[1:]),
        scalars=scalars,
        series_labels=series_labels,
        uses_labels=uses_labels,
        agent_fields=agent_fields,
        uses_inventory=any("inventory" in f.builtins for f in refs.values()),
        templates=spec.annotations,
    )


def _analyse_sources(
    sources: Mapping[str, str | None],
    spec: RuleSpec,
    catalog: Mapping[str, MetricSpec],
    report: Any,
) -> dict[str, expressions.References] | None:
    """Return what each expression refers to; None once any has a problem (all reported)."""
    refs: dict[str, expressions.References] = {}
    failed = False
    for name, source in sources.items():
        if source is None:
            continue
        found, problems = expressions.analyse(source, catalog)
        for problem in problems:
            report(name, problem, "")
        failed = failed or bool(problems)
        refs[name] = found
        for param in sorted(found.params - set(spec.params)):
            report(
                name,
                f"params.{param} is not declared",
                f"add it under params: (declared: {', '.join(spec.params) or 'none'})",
            )
            failed = True
    return None if failed else refs


def _series_shape(
    metrics: list[str], catalog: Mapping[str, MetricSpec], report: Any
) -> tuple[list[str], tuple[str, ...], tuple[str, ...]] | None:
    """Return (labelled metrics, unlabelled metrics, series labels); None when labels differ."""
    labelled = [m for m in metrics if catalog[m].labels]
    scalars = tuple(m for m in metrics if not catalog[m].labels)
    series_labels: tuple[str, ...] = ()
    if labelled:
        series_labels = catalog[labelled[0]].labels
        for other in labelled[1:]:
            if set(catalog[other].labels) != set(series_labels):
                report(
                    "expr",
                    f"{labelled[0]}{{{','.join(series_labels)}}} and "
                    f"{other}{{{','.join(catalog[other].labels)}}} have different labels: "
                    "per-series metrics join only on identical labels",
                    "split into two rules",
                )
                return None
    return labelled, scalars, series_labels


def _check_names(
    spec: RuleSpec,
    refs: Mapping[str, expressions.References],
    series_labels: tuple[str, ...],
    report: Any,
) -> bool:
    """Return whether every label, matcher and template name is one the series has."""
    ok = True
    for found in refs.values():
        for label in sorted(found.labels - set(series_labels)):
            report(
                "expr",
                f"labels.{label}: the series has no such label",
                f"labels here: {', '.join(series_labels) or 'none (agent-level rule)'}",
            )
            ok = False
    for matcher in spec.match:
        if matcher.label not in series_labels:
            report(
                "match",
                f"match on {matcher.label!r}: the series has no such label",
                f"labels here: {', '.join(series_labels) or 'none (agent-level rule)'}",
            )
            ok = False
    allowed = set(TEMPLATE_NAMES) | set(series_labels) | {f"params.{p}" for p in spec.params}
    for annotation, template in spec.annotations.items():
        for name in sorted(template.names() - allowed):
            report(
                "annotations",
                f"annotations.{annotation}: unknown template name {{{{ {name} }}}}",
                f"known: {', '.join(sorted(allowed))}",
            )
            ok = False
    return ok


def _compile_sources(
    sources: Mapping[str, str | None],
    spec: RuleSpec,
    metrics: list[str],
    series_labels: tuple[str, ...],
    report: Any,
) -> dict[str, Any] | None:
    """Return each expression compiled with its params bound; None if a dry run fails."""
    programs: dict[str, Any] = {}
    for name, source in sources.items():
        if source is None:
            continue
        bound = (
            expressions.bind_params_value(source, spec.params)
            if name == "value"
            else expressions.bind_params(source, spec.params)
        )
        program = expressions.compile_program(bound)
        issue = expressions.dry_run(
            program,
            tuple(metrics),
            series_labels,
            (lambda r: isinstance(r, int | float) and not isinstance(r, bool))
            if name == "value"
            else (lambda r: isinstance(r, bool)),
            "a number" if name == "value" else "true or false",
        )
        if issue is not None:
            report(name, f"{name} {issue}", "")
            return None
        programs[name] = program
    return programs


@dataclass(frozen=True)
class DocumentKind:
    """Another kind of document read from the policy files beside AlertPolicy (PatchPolicy).

    `parse(node, path, where, order)` returns one document, or None with its errors recorded;
    `build(documents, errors)` checks what spans documents and returns the loaded set. Both
    share the documents' header, scope and layers with alert policies (the functions above).
    """

    parse: Callable[[yaml.Node, str, Where, int], Any]
    build: Callable[[list[Any], list[str]], Any]


def document_kind(node: yaml.Node) -> str | None:
    """Return the `kind:` a document node says it is, None when it says none readable."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if getattr(key_node, "value", None) == "kind" and isinstance(
                value_node, yaml.ScalarNode
            ):
                return str(value_node.value)
    return None


def load_documents(
    paths: list[Path],
    where_errors: list[str],
    others: Mapping[str, DocumentKind] | None = None,
    found: dict[str, list[Any]] | None = None,
) -> list[PolicyDoc]:
    """Parse every document of every file in `paths` (sorted order fixes precedence).

    Documents of a kind in `others` go to that kind's parser and into `found[kind]`.
    """
    docs: list[PolicyDoc] = []
    ordinal = 0
    order = 0
    for path in paths:
        where = Where(str(path), where_errors)
        for node in compose_documents(path, where):
            kind = document_kind(node)
            order += 1
            try:
                if others is not None and found is not None and kind is not None and kind in others:
                    other = others[kind].parse(node, str(path), where, order)
                    if other is not None:
                        found.setdefault(kind, []).append(other)
                    continue
                doc = parse_document(node, str(path), where, order, ordinal)
            except Unreadable as exc:
                where.at(
                    exc.node,
                    "",
                    f"YAML cannot read this value: {exc.reason}",
                    "write plain scalars, lists and mappings with string keys, without tags",
                )
                doc = None
            ordinal += 1000
            if doc is not None:
                docs.append(doc)
    return docs


_Definitions = dict[str, list[tuple[PolicyDoc, RuleEntry]]]


def cross_check(
    docs: list[PolicyDoc], catalog: Mapping[str, MetricSpec], errors: list[str]
) -> tuple[list[PolicyDoc], dict[int, Plan]]:
    """Check what spans documents; mark overrides; compile definitions and merged overrides."""
    plans: dict[int, Plan] = {}
    _check_policy_names(docs, errors)
    definitions: _Definitions = {}
    out: list[PolicyDoc] = []
    for doc in sorted(docs, key=lambda d: d.rank):
        where = Where(doc.path, errors)
        entries: list[RuleEntry] = []
        for entry in doc.rules:
            context = _context(doc.name, entry.index, entry.name)
            higher = [
                (d, e)
                for d, e in definitions.get(entry.name, [])
                if LAYERS.index(d.layer) < LAYERS.index(doc.layer)
            ]
            if higher:
                entry = replace(entry, override=True)  # noqa: PLW2901 - kept, marked
                _check_override(entry, higher, doc, where, context, catalog)
            elif not _define(entry, doc, where, context, catalog, definitions, plans):
                continue
            entries.append(entry)
        out.append(replace(doc, rules=tuple(entries)))
    _check_inhibit_targets(out, set(definitions), errors)
    return out, plans


def _check_policy_names(docs: list[PolicyDoc], errors: list[str]) -> None:
    """Report a policy name used by two documents."""
    names_seen: dict[str, PolicyDoc] = {}
    for doc in docs:
        where = Where(doc.path, errors)
        if doc.name in names_seen:
            first = names_seen[doc.name]
            where.at(
                None,
                _context(doc.name),
                f"line {doc.line}: duplicate policy name (also {first.path}:{first.line})",
                "rename one",
            )
        names_seen[doc.name] = doc


def _check_override(
    entry: RuleEntry,
    higher: list[tuple[PolicyDoc, RuleEntry]],
    doc: PolicyDoc,
    where: Where,
    context: str,
    catalog: Mapping[str, MetricSpec],
) -> None:
    """Check an override merged onto each rule it overrides, and the params it sets."""
    for base_doc, base in higher:
        merged = entry.apply(base.apply(RuleSpec(name=entry.name)))
        for key in sorted(set(entry.values.get("params", {})) - set(base.values.get("params", {}))):
            where.at(
                entry.nodes["params"],
                context,
                f"params.{key} is not declared by the rule it overrides "
                f"({line_of(base_doc.path, base.node)})",
                f"declared: {', '.join(base.values.get('params', {})) or 'none'}",
            )
        _check(merged, entry, doc, where, catalog)


def _define(
    entry: RuleEntry,
    doc: PolicyDoc,
    where: Where,
    context: str,
    catalog: Mapping[str, MetricSpec],
    definitions: _Definitions,
    plans: dict[int, Plan],
) -> bool:
    """Compile a rule no higher layer defines and record it; return False to drop it."""
    same = [
        (d, e)
        for d, e in definitions.get(entry.name, [])
        if d.layer == doc.layer and d.scope == doc.scope
    ]
    if same:
        other_doc, other = same[0]
        where.at(
            entry.node,
            context,
            f"rule {entry.name!r} is defined twice for the same layer and scope "
            f"(also {line_of(other_doc.path, other.node)})",
            "rename one or narrow a scope",
        )
        return False
    if "expr" not in entry.values and doc.layer != "global":
        where.at(
            entry.node,
            context,
            f"no expr, and no higher layer defines a rule {entry.name!r} to override",
            "add expr, or correct the name",
        )
        return False
    plan = _check(entry.apply(RuleSpec(name=entry.name)), entry, doc, where, catalog)
    if plan is not None:
        plans[entry.ordinal] = plan
    definitions.setdefault(entry.name, []).append((doc, entry))
    return True


def _check_inhibit_targets(docs: list[PolicyDoc], all_names: set[str], errors: list[str]) -> None:
    """Report an inhibits entry naming a rule no document defines."""
    for doc in docs:
        where = Where(doc.path, errors)
        for entry in doc.rules:
            for inhibit in entry.values.get("inhibits", ()):
                for target in inhibit.rules:
                    if target != "*" and target not in all_names:
                        where.at(
                            entry.nodes["inhibits"],
                            _context(doc.name, entry.index, entry.name),
                            f"inhibits unknown rule {target!r}",
                            f"known: {', '.join(sorted(all_names))}",
                        )


def _check(
    spec: RuleSpec,
    entry: RuleEntry,
    doc: PolicyDoc,
    where: Where,
    catalog: Mapping[str, MetricSpec],
) -> Plan | None:
    context = _context(doc.name, entry.index, entry.name)

    def report(field_name: str, reason: str, fix: str) -> None:
        where.at(entry.nodes.get(field_name, entry.node), context, reason, fix)

    return check_spec(spec, catalog, report)


def policy_files(path: Path) -> list[Path]:
    """Return the policy files under `path` (a file, or *.yaml / *.yml of a directory tree).

    A `tests/` folder holds unit tests, not policies, and is skipped.
    """
    if path.is_file():
        return [path]
    found = [
        p
        for p in path.rglob("*")
        if p.suffix in (".yaml", ".yml")
        and p.is_file()
        and "tests" not in p.relative_to(path).parts
    ]
    return sorted(found)


def load(
    path: Path, catalog: Mapping[str, MetricSpec] | None = None
) -> tuple[list[PolicyDoc], dict[int, Plan], Mapping[str, MetricSpec]]:
    """Load and check every policy under `path`; raise PolicyError listing every problem."""
    docs, plans, specs, _ = load_all(path, catalog)
    return docs, plans, specs


def load_all(
    path: Path,
    catalog: Mapping[str, MetricSpec] | None = None,
    others: Mapping[str, DocumentKind] | None = None,
) -> tuple[list[PolicyDoc], dict[int, Plan], Mapping[str, MetricSpec], dict[str, Any]]:
    """Load alert policies and the `others` kinds under `path`: all valid, or PolicyError.

    Returns the alert documents, their plans, the catalogue and, per other kind, what its
    `build` returned (built from no documents when the files have none of that kind).
    """
    specs = agent_catalog() if catalog is None else catalog
    errors: list[str] = []
    if not path.exists():
        raise PolicyError([f"{path}: no such file or directory"])
    files = policy_files(path)
    if not files:
        raise PolicyError([f"{path}: no *.yaml policy file found"])
    found: dict[str, list[Any]] = {}
    docs = load_documents(files, errors, others, found)
    docs, plans = cross_check(docs, specs, errors)
    built = {
        kind: kind_of.build(found.get(kind, []), errors) for kind, kind_of in (others or {}).items()
    }
    if errors:
        raise PolicyError(errors)
    return docs, plans, specs, built


# What other document kinds share with alert policies, so that their header, scope and layers
# read and fail exactly alike (rmm_server/patching/policy.py).
parse_scope = _parse_scope
parse_metadata = _parse_metadata
parse_layer = _parse_layer
check_layer_scope = _check_layer_scope
parse_duration_node = _duration
