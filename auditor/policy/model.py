"""The normalised policy: one pydantic model whatever Azure dialect the file was written in.

Owns the vocabulary (isolation modes, rule types, categories, ports, protocols). Every loader
raises `auditor.errors.PolicyError`. Parsing lives in `azure.py`; built-ins in `builtin.py`.
"""
from __future__ import annotations

import enum
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from auditor.errors import PolicyError, where

__all__ = ["PolicyError", "IsolationMode", "RuleType", "Category", "PortRange", "FqdnRule",
           "ServiceTagRule", "PrivateEndpointRule", "Rule", "Problem", "Policy", "STATUSES",
           "NOT_ENFORCED"]


class IsolationMode(str, enum.Enum):
    DISABLED = "disabled"
    ALLOW_INTERNET_OUTBOUND = "allow_internet_outbound"
    ALLOW_ONLY_APPROVED_OUTBOUND = "allow_only_approved_outbound"


class RuleType(str, enum.Enum):
    FQDN = "fqdn"
    SERVICE_TAG = "service_tag"
    PRIVATE_ENDPOINT = "private_endpoint"


class Category(str, enum.Enum):
    REQUIRED = "required"
    RECOMMENDED = "recommended"
    USER_DEFINED = "user_defined"
    DEPENDENCY = "dependency"      # ARM's RuleCategory has it (rules a connection depends on)
    BUILT_IN = "built_in"          # ours: scenario sets pulled in by `include`


class PortRange(BaseModel):
    """Inclusive port range; Azure writes them as "80, 8080-8089"."""
    model_config = ConfigDict(frozen=True, defer_build=True)
    lo: int
    hi: int

    def __str__(self) -> str:
        return str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"


Protocol = Literal["tcp", "udp", "icmp", "*"]
Action = Literal["allow", "deny"]
# Azure's RuleStatus, in its own order. Whether each is enforced: `NOT_ENFORCED` and docs/policy.md.
Status = Literal["Inactive", "Active", "Provisioning", "Deleting", "Failed"]
STATUSES: tuple[str, ...] = ("Inactive", "Active", "Provisioning", "Deleting", "Failed")
# Inactive: Azure shows every rule Inactive until the managed network is provisioned (first
# compute, or `provision-network`); a node that runs has a provisioned network, so it applies.
# Provisioning: being created; judged as the network will be once it lands. Deleting: the owner
# removed it. Failed: Azure could not create it (no private endpoint, no firewall rule exists).
NOT_ENFORCED = frozenset({"Deleting", "Failed"})


class _RuleBase(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)
    name: str
    category: Category = Category.USER_DEFINED
    status: Status | None = None          # read-only in Azure; Deleting/Failed rules allow nothing
    line: int | None = Field(default=None, exclude=True)   # where the rule starts in the file
    note: str | None = None                # why a built-in looks the way it does
    info: tuple[tuple[str, str], ...] = ()  # read-only fields Azure reports (errorInformation ...)

    @property
    def enforced(self) -> bool:
        return self.status not in NOT_ENFORCED


class FqdnRule(_RuleBase):
    type: Literal[RuleType.FQDN] = RuleType.FQDN
    destination: str                       # normalised pattern: lower case, A-labels, no dot at end


class ServiceTagRule(_RuleBase):
    type: Literal[RuleType.SERVICE_TAG] = RuleType.SERVICE_TAG
    service_tag: str | None = None
    protocol: Protocol = "*"
    port_ranges: tuple[PortRange, ...] = ()   # empty = any port ("*")
    address_prefixes: tuple[str, ...] = ()    # when set, used instead of the tag (as Azure does)
    action: Action = "allow"

    def ports_text(self) -> str:
        return ", ".join(str(p) for p in self.port_ranges) if self.port_ranges else "*"


class PrivateEndpointRule(_RuleBase):
    type: Literal[RuleType.PRIVATE_ENDPOINT] = RuleType.PRIVATE_ENDPOINT
    service_resource_id: str
    subresource_target: str
    spark_enabled: bool = False
    fqdns: tuple[str, ...] = ()               # explicit, as written; derived ones: endpoints.py


Rule = Annotated[Union[FqdnRule, ServiceTagRule, PrivateEndpointRule], Field(discriminator="type")]


class Problem(BaseModel):
    """One finding of the loader or the linter."""
    model_config = ConfigDict(frozen=True, defer_build=True)
    level: Literal["error", "warning"]
    file: str
    reason: str
    line: int | None = None
    rule: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        return where(self.file, self.reason, line=self.line, rule=self.rule,
                     field=self.field, level=self.level)


Dialect = Literal["cli_yaml", "az_json", "arm", "bicep", "cli_rules"]
Resource = Literal["workspace", "foundry"]
Kind = Literal["V1", "V2"]


class Policy(BaseModel):
    """A managed network as the auditor enforces it.

    `file_rules` are the rules written in the file; `rules` are the effective ones in
    `isolation_mode`: the enforced file rules plus, for a file the user wrote, the `required`
    built-ins of its network kind that Azure adds in approved-only mode. A file that is Azure's
    own view of the network (`authoritative`) already lists its required rules: nothing is added.
    """
    model_config = ConfigDict(frozen=True, defer_build=True)
    path: str
    dialect: Dialect
    isolation_mode: IsolationMode
    resource: Resource | None = None       # workspace = Azure ML / hub; foundry = Cognitive Services account
    kind: Kind = "V1"                      # managedNetworkKind (stated, or the resource's default)
    authoritative: bool = False            # Azure's own show/list output: judged by its rules only
    location: str | None = None            # normalised region name, e.g. "eastus"
    workspace_name: str | None = None
    workspace_id: str | None = None        # the GUID, when the file states it (derives amlworkspace names)
    file_rules: tuple[Rule, ...] = ()
    rules: tuple[Rule, ...] = ()
    sha256: str = ""
    warnings: tuple[Problem, ...] = ()
    info: tuple[tuple[str, str], ...] = ()  # fields Azure reports that do not change a verdict

    def rule_counts(self) -> dict[RuleType, int]:
        counts = {t: 0 for t in RuleType}
        for rule in self.rules:
            counts[rule.type] += 1
        return counts
