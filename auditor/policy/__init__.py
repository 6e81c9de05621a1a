"""The Azure managed-network policy: model, dialects, built-in rules, service tags, verdicts."""
from .azure import load_policy, load_policy_lenient
from .model import IsolationMode, Policy, PolicyError, Problem, RuleType

__all__ = ["IsolationMode", "Policy", "PolicyError", "Problem", "RuleType", "load_policy",
           "load_policy_lenient"]
