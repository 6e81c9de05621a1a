"""egress-auditor: audit a node's real egress against an Azure managed-network allowlist.

Pipeline (one way): source -> decode -> track -> judge/detect -> sinks.
"""
__version__ = "0.1.0"
