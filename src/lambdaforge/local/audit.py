"""The permission audit: what each role of the stack was granted against what it actually used.

The local cloud records every request a role makes (`local.iam`). Set against the template's
policies, that gives, per role, the actions used and each granted action that no call needed.
A grant nobody needs is removed from the template or listed in `infra/iam-audit.yaml` with its
reason (work AWS does as the role that the local cloud does not: log delivery, X-Ray, dead-letter
queues). A call that was denied is always a failure.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lambdaforge.local.iam import Call, any_match, statements

MANAGED = "managed:"  # how iam-audit.yaml names an AWS managed policy: managed:AWSLambdaBasicExecutionRole


@dataclass
class RoleAudit:
    role: str  # the template's logical id
    used: Counter[str] = field(default_factory=Counter)  # action -> allowed calls
    unused_listed: dict[str, str] = field(default_factory=dict)  # action -> the listed reason
    unused: list[str] = field(default_factory=list)  # "action (statement)": neither used nor listed
    stale: list[str] = field(default_factory=list)  # listed, yet no longer granted
    denied: list[str] = field(default_factory=list)  # "action on resource"

    @property
    def clean(self) -> bool:
        return not (self.unused or self.stale or self.denied)


def _granted(role: dict[str, Any]) -> list[tuple[str, str]]:
    """(statement label, action) for each Allow of a role's inline policies, as local.iam labels them."""
    policies = {p["PolicyName"]: p["PolicyDocument"] for p in role.get("Policies", [])}
    out: list[tuple[str, str]] = []
    for label, statement in statements(policies):
        if statement.get("Effect") == "Allow":
            actions = statement.get("Action", [])
            out.extend((label, a) for a in ([actions] if isinstance(actions, str) else actions))
    return out


def audit_role(role_id: str, role: dict[str, Any], calls: list[Call], listed: dict[str, str]) -> RoleAudit:
    result = RoleAudit(role=role_id)
    used_by: dict[str, list[str]] = {}  # statement label -> actions it allowed
    for call in calls:
        if not call.allowed:
            result.denied.append(f"{call.action} on {call.resource}")
            continue
        result.used[call.action] += 1
        for label in call.statements:
            used_by.setdefault(label, []).append(call.action)
    granted = _granted(role)
    for label, action in granted:
        if any(any_match(action, done, ignore_case=True) for done in used_by.get(label, [])):
            continue
        if action in listed:
            result.unused_listed[action] = listed[action]
        else:
            result.unused.append(f"{action} ({label})")
    managed = {MANAGED + str(arn).rsplit("/", 1)[-1] for arn in role.get("ManagedPolicyArns") or []}
    for name in sorted(managed):
        if name in listed:
            result.unused_listed[name] = listed[name]
        else:
            result.unused.append(f"{name} (attached managed policy)")
    result.stale = sorted(set(listed) - {action for _, action in granted} - managed)
    return result


def audit(cfn: dict[str, Any], calls: list[Call], physical: dict[str, str], listing: Path) -> list[RoleAudit]:
    """One RoleAudit per IAM role of the translated template (calls are keyed by physical role name)."""
    listed: dict[str, dict[str, str]] = yaml.safe_load(listing.read_text()) or {}
    by_role: dict[str, list[Call]] = {}
    for call in calls:
        by_role.setdefault(call.role, []).append(call)
    out = []
    for role_id, resource in cfn["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        mine = by_role.get(physical.get(role_id, role_id), [])
        out.append(audit_role(role_id, resource.get("Properties", {}), mine, listed.get(role_id) or {}))
    return out


def report(audits: list[RoleAudit]) -> str:
    lines = ["# Permission audit", ""]
    for a in audits:
        lines += [f"## {a.role}", "", "Used (allowed calls): " + (", ".join(
            f"{action} ({n})" for action, n in sorted(a.used.items())) or "none"), ""]
        lines += [f"- not used, listed: {k}: {why}" for k, why in sorted(a.unused_listed.items())]
        lines += [f"- **not used and not listed**: {u}" for u in a.unused]
        lines += [f"- **listed but no longer granted**: {s}" for s in a.stale]
        lines += [f"- **denied**: {d}" for d in sorted(set(a.denied))]
        lines.append("")
    return "\n".join(lines)
