"""What the alert manager reads of a rule and a condition, as plain test data (the policy
engine's EffectiveRule and Condition carry more)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rule:
    key: str = "servers/DiskLow"
    name: str = "DiskLow"
    severity: str = "warning"
    tier: str = "L1"
    for_seconds: float = 60.0
    keep_firing_for_seconds: float = 0.0
    has_clear: bool = False
    labels: Mapping[str, str] = field(default_factory=lambda: {"team": "ops"})


@dataclass(frozen=True)
class Condition:
    rule: Rule
    series_labels: Mapping[str, str]
    active: bool
    clear: bool | None = None
    value: float | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
