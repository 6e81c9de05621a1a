"""`policy check`: what the loader reports plus what Azure would reject or silently ignore.

Errors: storage FQDN rules in approved-only mode, FQDN and service-tag rules in
allow_internet_outbound (Azure refuses them there), misplaced wildcards, bad port ranges,
duplicate rule names, malformed private-endpoint resource ids, service tags absent from the
tags file. Warnings: `*contoso.com` patterns, `*.pypi.org` without `pypi.org`, rules that have
no effect in `disabled` mode, private endpoints whose names cannot be derived, unknown keys.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from . import builtin
from .endpoints import known_subresource, parse_resource_id, rule_names
from .match import is_storage_pattern
from .model import (Category, FqdnRule, IsolationMode, Policy, PrivateEndpointRule, Problem,
                    ServiceTagRule)

# Services whose clients talk to the apex name itself (pip's index is https://pypi.org/simple,
# the Hugging Face Hub API is https://huggingface.co/api), which `*.<apex>` does not match.
_APEX_NEEDED = {"pypi.org": "pip install fails", "huggingface.co": "model downloads fail"}
from .servicetags import ServiceTags


def _p(policy: Policy, level: Literal["error", "warning"], rule, field: str, reason: str) -> Problem:
    return Problem(level=level, file=policy.path, reason=reason, line=rule.line, rule=rule.name,
                   field=field)


def lint(policy: Policy, tags: ServiceTags | None, include: tuple[str, ...] = ()) -> list[Problem]:
    """Problems of a loaded policy (beyond those the loader found)."""
    out: list[Problem] = []
    approved = policy.isolation_mode is IsolationMode.ALLOW_ONLY_APPROVED_OUTBOUND
    internet = policy.isolation_mode is IsolationMode.ALLOW_INTERNET_OUTBOUND
    fqdns = {r.destination for r in policy.file_rules if isinstance(r, FqdnRule)}
    for rule in policy.file_rules:
        if isinstance(rule, FqdnRule):
            dest = rule.destination
            if approved and is_storage_pattern(dest):
                out.append(_p(policy, "error", rule, "destination",
                              f"{dest!r} is an Azure Storage endpoint: FQDN rules cannot reach "
                              "storage in allow_only_approved_outbound; use a private endpoint"))
            elif approved and dest.lstrip("*.").endswith("core.windows.net") and "*" in dest:
                out.append(_p(policy, "warning", rule, "destination",
                              f"{dest!r} also covers Azure Storage endpoints, which it will "
                              "never allow in allow_only_approved_outbound"))
            if dest.startswith("*") and not dest.startswith("*.") and dest != "*":
                out.append(_p(policy, "warning", rule, "destination",
                              f"{dest!r} matches any name ending in {dest[1:]!r} (e.g. "
                              f"'x{dest[1:]}'); did you mean '*.{dest[1:]}'?"))
            for apex, symptom in _APEX_NEEDED.items():
                if dest == f"*.{apex}" and apex not in fqdns:
                    out.append(_p(policy, "warning", rule, "destination",
                                  f"{dest!r} does not cover {apex!r} itself (a wildcard "
                                  f"matches subdomains only); add an FQDN rule for {apex!r} "
                                  f"or {symptom}"))
        if (isinstance(rule, (FqdnRule, ServiceTagRule)) and internet
                and rule.category is Category.USER_DEFINED):
            out.append(_p(policy, "error", rule, "type",
                          f"Azure refuses {rule.type.value} rules in allow_internet_outbound "
                          "(only private-endpoint rules can be added in that mode): the "
                          "update fails"))
        elif isinstance(rule, (FqdnRule, ServiceTagRule)) and not approved and not internet:
            out.append(_p(policy, "warning", rule, "type",
                          f"{rule.type.value} rules have no effect in "
                          f"{policy.isolation_mode.value} mode"))
        if isinstance(rule, ServiceTagRule) and not rule.address_prefixes and tags is not None:
            if rule.service_tag and tags.resolve(rule.service_tag) is None:
                out.append(_p(policy, "error", rule, "destination.service_tag",
                              f"service tag {rule.service_tag!r} is not in "
                              f"{Path(tags.path).name or 'the service tags file'}"))
        if isinstance(rule, PrivateEndpointRule):
            parsed = parse_resource_id(rule.service_resource_id)
            rtype = parsed[0] if parsed else ""
            if not rule_names(rule, region=policy.location, workspace_id=policy.workspace_id):
                why = ("unknown resource type/subresource" if not known_subresource(
                    rtype, rule.subresource_target) else "needs the workspace region/id")
                out.append(_p(policy, "warning", rule, "destination.subresource_target",
                              f"cannot derive the endpoint's host names ({why}: "
                              f"{rtype} {rule.subresource_target!r}); add 'fqdns' so traffic "
                              "to it is recognised"))
    for name in include:
        for rule in builtin.scenario_rules(name):
            if approved and is_storage_pattern(rule.destination):
                out.append(Problem(level="warning", file=policy.path, rule=rule.name,
                                   field="destination", reason=f"built-in {name} host "
                                   f"{rule.destination!r} is Azure Storage and will be denied "
                                   "(storage_requires_private_endpoint)"))
    return out

