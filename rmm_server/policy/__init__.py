"""Alert policies: YAML documents of CEL rules, validated at load, evaluated per agent.

Merge rules (docs/policies.md says the same with examples):

1. Scope. A document applies to an agent when the agent is inside its `scope`. Include lists
   (`clients`, `sites` as "client/site", `tags`, `os`, `agents` by whole id, or by hostname
   inside listed clients or sites) must all hold;
   `tags` needs every listed tag. Any `exclude` entry keeps the agent out (`exclude.tags`: any
   one tag). An empty scope is refused: a fleet-wide policy says `scope: {all: true}`.
2. Layers apply in order global → client → site → agent; inside a layer, by file path, then by
   position in the file. A client / site / agent document must list `scope.clients` /
   `scope.sites` / `scope.agents`.
3. A rule entry is an *override* when a higher layer defines a rule of the same name; otherwise
   it is a *definition* with key "policy/rule". An override without expr that overrides nothing
   is an error at load (a typo in a name never becomes a silent new rule).
4. An override changes, for one agent, every rule of that name in force for it: `labels`,
   `annotations` and `params` merge key by key (params keys must exist in the overridden rule);
   every other field given (`expr`, `clear`, `value`, `for`, `keep_firing_for`, `severity`,
   `tier`, `match`, `inhibits`, `remediate`, `enabled`) replaces the previous value. An override
   whose scope misses the agent does nothing. `enabled: false` takes the rule out of
   `rules_for` and `evaluate`; `explain` still lists it, with who disabled it.
5. Two definitions of one name in one layer with the same scope are an error; with different
   scopes both apply where both match (their keys differ by policy name).
"""

from __future__ import annotations

from rmm_common.errors import PolicyError
from rmm_server.policy.model import (
    AgentContext,
    Condition,
    EffectiveRule,
    Inhibit,
    Matcher,
    Provenance,
    Remediate,
    SeriesSample,
)
from rmm_server.policy.policyset import PolicySet, load_policy_dir, validate_path
from rmm_server.policy.report import report_json_to_context

__all__ = [
    "AgentContext",
    "Condition",
    "EffectiveRule",
    "Inhibit",
    "Matcher",
    "PolicyError",
    "PolicySet",
    "Provenance",
    "Remediate",
    "SeriesSample",
    "load_policy_dir",
    "report_json_to_context",
    "validate_path",
]
