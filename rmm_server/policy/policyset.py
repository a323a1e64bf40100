"""An immutable, loaded set of policies: which rules apply to an agent, and their outcome."""

from __future__ import annotations

import hashlib
import logging
import struct
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import cel

from rmm_common.errors import PolicyError
from rmm_common.metric_catalog import MetricSpec
from rmm_server.policy import expressions
from rmm_server.policy.loader import (
    Plan,
    PolicyDoc,
    RuleEntry,
    RuleSpec,
    check_spec,
    load_all,
)
from rmm_server.policy.model import (
    DEFAULT_CONSENT,
    AgentContext,
    Condition,
    ConsentSetting,
    EffectiveRule,
    Provenance,
    SeriesSample,
)

if TYPE_CHECKING:
    from rmm_server.patching.policy import PatchPolicySet

log = logging.getLogger(__name__)

_EMPTY: Mapping[str, str] = MappingProxyType({})
# Overrides of these fields change what is compiled; others only change EffectiveRule fields.
_PLAN_FIELDS = frozenset({"expr", "clear", "value", "params", "annotations"})
# Bound the per-agent cache: one entry per distinct (agent, client, site, tags, os).
_CACHE_LIMIT = 100_000


@dataclass(frozen=True)
class _Resolved:
    rule: EffectiveRule
    plan: Plan
    # The collectors whose info the rule's functions read: () none, None any (info_value).
    info_sections: tuple[str, ...] | None = ()


# The info each function of expressions.FUNCTIONS reads (None: a collector named at run time).
_FUNCTION_INFO: dict[str, tuple[str, ...] | None] = {
    "service_state": ("services",),
    "process_running": ("processes",),
    "info_value": None,
}
assert set(_FUNCTION_INFO) == set(expressions.FUNCTIONS)


def _info_sections(rule: EffectiveRule) -> tuple[str, ...] | None:
    """Return the collectors whose info `rule` may read through functions (by name in its
    sources: a name inside a string literal only makes this wider, never narrower)."""
    sources = " ".join(s for s in (rule.expr, rule.clear, rule.value) if s)
    sections: list[str] = []
    for function, read in _FUNCTION_INFO.items():
        if function in sources:
            if read is None:
                return None
            sections += read
    return tuple(sections)


# One rule's outcome at its last evaluation for an agent: the rule as resolved then, what it
# read (its signature) and the conditions it gave.
_Outcome = tuple[_Resolved, tuple[Any, ...], tuple[Condition, ...]]


def _format_value(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.6g}"


@dataclass(frozen=True)
class _Bundle:
    rules: tuple[_Resolved, ...]
    metrics: frozenset[str]  # every metric name the rules read
    scalars: tuple[str, ...]
    agent_fields: frozenset[str]
    inventory: bool
    # Whether a rule's outcome may be reused while its inputs are unchanged: not when an
    # agent-level rule reads `labels`, which only a series rule run before it binds (its
    # outcome then depends on another rule's inputs).
    reusable: bool = True


class PolicySet:
    """A validated set of AlertPolicy documents; build one with `load_policy_dir`."""

    def __init__(
        self,
        docs: Sequence[PolicyDoc],
        plans: Mapping[int, Plan],
        catalog: Mapping[str, MetricSpec],
        source: str = "",
        patches: PatchPolicySet | None = None,
    ) -> None:
        self._docs = tuple(sorted(docs, key=lambda d: d.rank))
        # The PatchPolicy documents loaded from the same files: they reload with the alert
        # rules, all or nothing, so a refused reload keeps both in force.
        if patches is None:
            from rmm_server.patching.policy import PatchPolicySet  # noqa: PLC0415 - see below

            patches = PatchPolicySet(())
        self.patches = patches
        self._plans = dict(plans)  # definition ordinal -> plan; merged plans are added lazily
        self._catalog = catalog
        self.source = source
        self._lock = threading.Lock()
        self._cache: dict[tuple[Any, ...], tuple[_Resolved, ...]] = {}
        self._merged: dict[tuple[int, ...], Plan | None] = {}
        self._bundles: dict[tuple[Any, ...], _Bundle] = {}
        self._consents: dict[tuple[Any, ...], ConsentSetting] = {}
        # Agent id -> rule key -> that rule's outcome at its last evaluation (evaluate with
        # reuse); a reload makes a new PolicySet, so outcomes never outlive their rules.
        self._outcomes: dict[str, dict[str, _Outcome]] = {}

    @property
    def policies(self) -> tuple[str, ...]:
        """Return the policy names, in the order they apply."""
        return tuple(d.name for d in self._docs)

    def __len__(self) -> int:
        return sum(len(d.rules) for d in self._docs)

    def remediation_scripts(self) -> list[tuple[str, str]]:
        """Return (file:line, script name) of every rule's `remediate.script`, in file order."""
        found: list[tuple[str, str]] = []
        for doc in self._docs:
            for entry in doc.rules:
                remedy = entry.values.get("remediate")
                if remedy is not None:
                    node = entry.nodes.get("remediate", entry.node)
                    found.append((f"{doc.path}:{node.start_mark.line + 1}", remedy.script))
        return found

    def _resolve(self, agent: AgentContext) -> tuple[_Resolved, ...]:
        """Return every rule of the agent, disabled ones included, with its plan."""
        key = (agent.agent_id, agent.hostname, agent.client, agent.site, agent.tags, agent.os)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        specs: dict[str, RuleSpec] = {}
        applied: dict[str, list[RuleEntry]] = {}
        origin: dict[str, tuple[PolicyDoc, RuleEntry]] = {}
        provenance: dict[str, list[Provenance]] = {}
        by_name: dict[str, list[str]] = {}
        for doc in self._docs:
            if not doc.scope.matches(agent):
                continue
            for entry in doc.rules:
                where = f"{doc.path}:{entry.node.start_mark.line + 1}"
                fields = [
                    Provenance(field=name, source=where, layer=doc.layer, policy=doc.name)
                    for name in entry.values
                ]
                if entry.override:
                    for rule_key in by_name.get(entry.name, []):
                        specs[rule_key] = entry.apply(specs[rule_key])
                        applied[rule_key].append(entry)
                        provenance[rule_key] += fields
                    continue
                rule_key = f"{doc.name}/{entry.name}"
                specs[rule_key] = entry.apply(RuleSpec(name=entry.name))
                applied[rule_key] = [entry]
                origin[rule_key] = (doc, entry)
                provenance[rule_key] = fields
                by_name.setdefault(entry.name, []).append(rule_key)
        resolved = []
        for rule_key, spec in specs.items():
            plan = self._plan(spec, applied[rule_key])
            if plan is None:
                continue
            doc, entry = origin[rule_key]
            rule = EffectiveRule(
                key=rule_key,
                name=spec.name,
                policy=doc.name,
                source=f"{doc.path}:{entry.node.start_mark.line + 1}",
                layer=doc.layer,
                severity=spec.severity,
                tier=spec.tier,
                for_seconds=spec.for_seconds,
                keep_firing_for_seconds=spec.keep_firing_for_seconds,
                has_clear=spec.clear is not None,
                labels=MappingProxyType(dict(spec.labels)),
                annotations=MappingProxyType({k: t.source for k, t in spec.annotations.items()}),
                inhibits=spec.inhibits,
                remediate=spec.remediate,
                provenance=tuple(provenance[rule_key]),
                expr=spec.expr,
                clear=spec.clear,
                value=spec.value,
                match=spec.match,
                params=MappingProxyType(dict(spec.params)),
                enabled=spec.enabled,
                series_labels=plan.series_labels,
                ticket=spec.ticket,
            )
            resolved.append(_Resolved(rule, plan, _info_sections(rule)))
        result = tuple(resolved)
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = result
        return result

    def _plan(self, spec: RuleSpec, entries: list[RuleEntry]) -> Plan | None:
        """Return the compiled plan of a definition with its overrides (compiled once)."""
        if len(entries) == 1:
            return self._plans.get(entries[0].ordinal)
        cache_key = tuple(e.ordinal for e in entries)
        with self._lock:
            if cache_key in self._merged:
                return self._merged[cache_key]
        if not any(name in _PLAN_FIELDS for e in entries[1:] for name in e.values):
            plan = self._plans.get(entries[0].ordinal)
        else:
            problems: list[str] = []
            plan = check_spec(spec, self._catalog, lambda f, r, x: problems.append(f"{f}: {r}"))
            if plan is None:
                # Each override was checked against its base at load; a combination of
                # several that still fails is logged and the rule left out, never half-run.
                log.error("policy rule %s: overrides do not combine: %s", spec.name, problems)
                return None
        with self._lock:
            self._merged[cache_key] = plan
        return plan

    def _bundle(self, agent: AgentContext) -> _Bundle:
        """Return the enabled rules of `agent` and the union of what they read (cached)."""
        key = (agent.agent_id, agent.hostname, agent.client, agent.site, agent.tags, agent.os)
        bundle = self._bundles.get(key)
        if bundle is None:
            rules = tuple(r for r in self._resolve(agent) if r.rule.enabled)
            plans = [r.plan for r in rules]
            scalars = tuple(dict.fromkeys(m for p in plans for m in p.scalars))
            labelled = {m for p in plans if p.driver for m in (p.driver, *p.joined)}
            bundle = _Bundle(
                rules=rules,
                metrics=frozenset(scalars) | labelled,
                scalars=scalars,
                agent_fields=frozenset().union(*(p.agent_fields for p in plans)),
                inventory=any(p.uses_inventory for p in plans),
                reusable=not any(p.uses_labels and p.driver is None for p in plans),
            )
            with self._lock:
                if len(self._bundles) >= _CACHE_LIMIT:
                    self._bundles.clear()
                self._bundles[key] = bundle
        return bundle

    def metrics_for(self, agent: AgentContext) -> frozenset[str]:
        """Return the metric names `agent`'s rules read (evaluate() ignores other samples, so
        callers need not build them)."""
        return self._bundle(agent).metrics

    def rules_for(self, agent: AgentContext) -> list[EffectiveRule]:
        """Return the enabled rules in force for `agent`, after scope and layering."""
        return [r.rule for r in self._resolve(agent) if r.rule.enabled]

    def consent_for(self, agent: AgentContext) -> ConsentSetting:
        """Return the consent mode for `agent` and the document that set it.

        The last in-scope document that sets `consent:` wins, in the order documents apply
        (global → client → site → agent, then file and position); none: notify.
        """
        key = (agent.agent_id, agent.hostname, agent.client, agent.site, agent.tags, agent.os)
        setting = self._consents.get(key)
        if setting is None:
            setting = ConsentSetting(DEFAULT_CONSENT)
            for doc in self._docs:
                if doc.consent is not None and doc.scope.matches(agent):
                    source = f"{doc.path}:{doc.consent_line}"
                    setting = ConsentSetting(doc.consent, doc.name, source, doc.layer)
            with self._lock:
                if len(self._consents) >= _CACHE_LIMIT:
                    self._consents.clear()
                self._consents[key] = setting
        return setting

    def explain(self, agent: AgentContext) -> list[EffectiveRule]:
        """Return every rule whose scope includes `agent`, disabled ones too, with provenance."""
        return [r.rule for r in self._resolve(agent)]

    def evaluate(
        self, agent: AgentContext, samples: Sequence[SeriesSample], reuse: bool = False
    ) -> list[Condition]:
        """Evaluate the agent's rules on its latest samples; one Condition per rule and series.

        With `reuse`, a rule whose inputs are the same as at its last evaluation for this agent
        (the same resolved rule, bit for bit the same values and labels of every metric it
        reads, the same agent fields, inventory changes and collector info) is not run again:
        its conditions of then are returned, which running it would give again (CEL reads
        nothing else). A rule reading `agent.seconds_since_report` (time) always runs. What
        the conditions mean over time (`for:`, `keep_firing_for:`, resolution) is the alert
        manager's, which sees every condition at every evaluation either way.
        """
        bundle = self._bundle(agent)
        if not bundle.rules:
            return []
        scalars, series = _split_samples(samples, bundle.metrics)
        memory = self._memory(agent.agent_id) if reuse and bundle.reusable else None
        # Per rule in order: its conditions of last time, or its signature (None: unknown)
        # when it runs now.
        plan_of_run: list[tuple[_Resolved, tuple[Any, ...] | None]] = []
        reused: dict[int, tuple[Condition, ...]] = {}  # position in plan_of_run -> conditions
        digests: dict[bytes | None, bytes] = {}
        for item in bundle.rules:
            if any(name not in scalars for name in item.plan.scalars):
                continue  # the agent does not report this metric: nothing to judge
            signature = None
            if memory is not None:
                signature = _signature(item, agent, scalars, series, digests)
                held = memory.get(item.rule.key)
                if (
                    signature is not None
                    and held is not None
                    and held[0] is item
                    and held[1] == signature
                ):
                    reused[len(plan_of_run)] = held[2]
                    plan_of_run.append((item, None))
                    continue
            plan_of_run.append((item, signature))
        running = [item for index, (item, _) in enumerate(plan_of_run) if index not in reused]
        context = _prepare_context(running, bundle, agent, scalars) if running else None
        base_values = {
            "agent": agent.agent_id,
            "hostname": agent.hostname,
            "client": agent.client,
            "site": agent.site,
            "os": agent.os,
            "inventory_added": ", ".join(agent.inventory_added),
            "inventory_removed": ", ".join(agent.inventory_removed),
        }
        conditions: list[Condition] = []
        for index, (item, signature) in enumerate(plan_of_run):
            if index in reused:
                conditions += reused[index]
                continue
            assert context is not None
            first = len(conditions)
            plan = item.plan
            if plan.driver is not None:
                self._run_series(item, plan.driver, context, series, base_values, conditions)
            else:
                value = scalars[plan.scalars[0]] if plan.scalars else None
                condition = self._run(item, context, value, _EMPTY, base_values)
                if condition is not None:
                    conditions.append(condition)
            if memory is not None:
                if signature is None:
                    memory.pop(item.rule.key, None)
                else:
                    memory[item.rule.key] = (item, signature, tuple(conditions[first:]))
        return conditions

    def _memory(self, agent_id: str) -> dict[str, _Outcome]:
        """Return the rule outcomes kept for `agent_id` (bounded like the other caches)."""
        memory = self._outcomes.get(agent_id)
        if memory is None:
            with self._lock:
                if len(self._outcomes) >= _CACHE_LIMIT:
                    self._outcomes.clear()
                memory = self._outcomes.setdefault(agent_id, {})
        return memory

    def _run_series(
        self,
        item: _Resolved,
        driver: str,
        context: cel.Context,
        series: Mapping[str, list[SeriesSample]],
        base_values: Mapping[str, str],
        conditions: list[Condition],
    ) -> None:
        """Run a per-series rule once per series of its driver; append its conditions."""
        plan = item.plan
        joined_index = {
            name: {frozenset(s.labels.items()): s.value for s in series.get(name, ())}
            for name in plan.joined
        }
        for sample in series.get(driver, ()):
            labels = sample.labels
            if plan.series_labels != tuple(labels) and set(labels) != set(plan.series_labels):
                continue
            if not all(m.matches(labels) for m in item.rule.match):
                continue
            if joined_index and not _bind_joined(context, joined_index, labels):
                continue
            context.add_variable(driver, sample.value)
            if plan.uses_labels:
                context.add_variable("labels", dict(labels))
            condition = self._run(item, context, sample.value, labels, base_values)
            if condition is not None:
                conditions.append(condition)

    def _run(
        self,
        item: _Resolved,
        context: cel.Context,
        series_value: float | None,
        labels: Mapping[str, str],
        base_values: Mapping[str, str],
    ) -> Condition | None:
        """Execute one rule on the prepared context; None when it cannot be evaluated."""
        plan, rule = item.plan, item.rule
        try:
            active = plan.program.execute(context) is True
            clear = (
                None if plan.clear_program is None else plan.clear_program.execute(context) is True
            )
            value = series_value
            if plan.value_program is not None:
                value = float(plan.value_program.execute(context)[0])
        except (RuntimeError, TypeError, ValueError, KeyError, IndexError) as exc:
            # A map key absent from this agent's data, say: this rule says nothing this time.
            log.debug("rule %s on %s: %s", rule.key, base_values["agent"], exc)
            return None
        annotations: Mapping[str, str] = _EMPTY
        # Rendering costs more than evaluating: skip it when the alert cannot be firing
        # (expr false and, for a rule with clear, clear true).
        if plan.templates and (active or clear is False):
            values = dict(base_values)
            values.update(labels)
            values["rule"] = rule.name
            values["severity"] = rule.severity
            values["value"] = _format_value(value)
            for name, param in rule.params.items():
                values[f"params.{name}"] = _format_param(param)
            annotations = {name: t.render(values) for name, t in plan.templates.items()}
        return Condition(
            rule=rule,
            series_labels=labels if labels is _EMPTY else dict(labels),
            active=active,
            clear=clear,
            value=value,
            annotations=annotations,
        )


def _split_samples(
    samples: Sequence[SeriesSample], needed: frozenset[str]
) -> tuple[dict[str, float], dict[str, list[SeriesSample]]]:
    """Return the samples the rules read: unlabelled by name, labelled as lists by name."""
    scalars: dict[str, float] = {}
    series: dict[str, list[SeriesSample]] = {}
    for sample in samples:
        if sample.name not in needed:
            continue
        if sample.labels:
            series.setdefault(sample.name, []).append(sample)
        else:
            scalars[sample.name] = sample.value
    return scalars, series


def _info_digest(raw: bytes | None, digests: dict[bytes | None, bytes]) -> bytes:
    """Return a digest of one collector's info (kept instead of the info itself, a few kB an
    agent); `digests`: those of this evaluation, so each info is hashed once."""
    found = digests.get(raw)
    if found is None:
        found = digests[raw] = (
            b"" if raw is None else hashlib.blake2b(raw, digest_size=16).digest() + b"+"
        )
    return found


def _signature(
    item: _Resolved,
    agent: AgentContext,
    scalars: Mapping[str, float],
    series: Mapping[str, list[SeriesSample]],
    digests: dict[bytes | None, bytes],
) -> tuple[Any, ...] | None:
    """Return everything `item`'s rule reads of the agent this time, comparable with ==, or
    None when that cannot be told (it reads the time since the last report, or collector info
    the caller gave no bytes of). Floats are compared as their bytes: == would take -0.0 for
    0.0 (which a rule's value shows) and never take a NaN for itself."""
    plan = item.plan
    if "seconds_since_report" in plan.agent_fields:
        return None
    values = [scalars[name] for name in plan.scalars]
    labels: tuple[Any, ...] = ()
    if plan.driver is not None:
        found = [s for name in (plan.driver, *plan.joined) for s in series.get(name, ())]
        labels = tuple((s.name, tuple(s.labels.items())) for s in found)
        values += [s.value for s in found]
    info: tuple[Any, ...] = ()
    if item.info_sections != ():
        raw = agent.info_raw
        if raw is None:
            return None
        names = tuple(raw) if item.info_sections is None else item.info_sections
        info = tuple((name, _info_digest(raw.get(name), digests)) for name in names)
    # Agent facts that are not part of the resolved rule's identity (the rule is cached per
    # agent id, hostname, client, site, tags and os), and what templates may show.
    facts = (agent.interval_seconds,) if plan.agent_fields else ()
    return (
        struct.pack(f"{len(values)}d", *values),
        labels,
        info,
        facts,
        agent.inventory_added,
        agent.inventory_removed,
    )


def _prepare_context(
    running: Sequence[_Resolved],
    bundle: _Bundle,
    agent: AgentContext,
    scalars: Mapping[str, float],
) -> cel.Context:
    """Return a CEL context holding the variables the `running` rules read (each rule reads
    its own variables only: the scalars it names, `agent`, `inventory`, the functions)."""
    context = cel.Context()
    if len(running) == len(bundle.rules):
        names: Sequence[str] = bundle.scalars
        agent_fields = bundle.agent_fields
        inventory = bundle.inventory
    else:
        names = tuple(dict.fromkeys(m for r in running for m in r.plan.scalars))
        agent_fields = frozenset().union(*(r.plan.agent_fields for r in running))
        inventory = any(r.plan.uses_inventory for r in running)
    for name in names:
        if name in scalars:
            context.add_variable(name, scalars[name])
    if agent_fields:
        context.add_variable("agent", _agent_map(agent, agent_fields))
    if inventory:
        context.add_variable(
            "inventory",
            {"added": list(agent.inventory_added), "removed": list(agent.inventory_removed)},
        )
    expressions.add_functions(context, agent.info)
    return context


def _bind_joined(
    context: cel.Context,
    joined_index: Mapping[str, Mapping[frozenset[tuple[str, str]], float]],
    labels: Mapping[str, str],
) -> bool:
    """Bind each joined metric's value for the series `labels`; False if one has no such series."""
    key = frozenset(labels.items())
    for name, index in joined_index.items():
        if key not in index:
            return False
        context.add_variable(name, index[key])
    return True


def _format_param(value: Any) -> str:
    """Render a param for a template: numbers short, lists comma-separated."""
    if isinstance(value, float):
        return _format_value(value)
    if isinstance(value, list):
        return ", ".join(_format_param(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _agent_map(agent: AgentContext, fields: frozenset[str]) -> dict[str, Any]:
    """Return the `agent` variable with only the fields the rules read."""
    full: dict[str, Any] = {
        "agent_id": agent.agent_id,
        "hostname": agent.hostname,
        "client": agent.client,
        "site": agent.site,
        "os": agent.os,
        "interval_seconds": float(agent.interval_seconds),
        "seconds_since_report": float(agent.seconds_since_report or 0.0),
    }
    out = {name: full[name] for name in fields if name in full}
    if "tags" in fields:
        out["tags"] = sorted(agent.tags)
    return out


def load_policy_dir(path: str | Path, catalog: Mapping[str, MetricSpec] | None = None) -> PolicySet:
    """Load and validate every policy under `path`; raise PolicyError with every problem."""
    # Imported here: rmm_server.patching.model imports this package's model, and this
    # package's __init__ imports this module, so a module-level import would be a circle.
    from rmm_server.patching.policy import KIND, KINDS  # noqa: PLC0415

    docs, plans, specs, others = load_all(Path(path), catalog, KINDS)
    return PolicySet(docs, plans, specs, source=str(path), patches=others[KIND])


def validate_path(path: str | Path, catalog: Mapping[str, MetricSpec] | None = None) -> list[str]:
    """Return every problem of the policies under `path` (empty when they are valid)."""
    try:
        from rmm_server.patching.policy import KINDS  # noqa: PLC0415 - see load_policy_dir

        load_all(Path(path), catalog, KINDS)
    except PolicyError as exc:
        return list(exc.errors)
    return []
