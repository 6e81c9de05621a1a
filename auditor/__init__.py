"""egress-auditor: audit a node's real egress against an Azure managed-network allowlist.

Pipeline (one way): source -> decode -> track -> judge/detect -> sinks.
"""
__version__ = "0.1.0"


def __getattr__(name: str):
    # `from auditor import audit` without importing the pipeline for every `import auditor`.
    if name in ("audit", "Report"):
        from auditor import api
        return getattr(api, name)
    raise AttributeError(f"module 'auditor' has no attribute {name!r}")
