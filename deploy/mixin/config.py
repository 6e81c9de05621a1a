"""The parameters of the monitoring mixin: which series are the auditor's, where the
dashboards and runbooks live, and the alert thresholds. One instance renders everything
(deploy/mixin/render.py); nothing else in the mixin holds a literal job name or URL."""
from __future__ import annotations

from dataclasses import dataclass

# Where docs/runbooks.md is published. Change it (or pass --runbook-url) for a fork or mirror.
PROJECT_DOCS = "https://github.com/egress-auditor/egress-auditor/blob/main/docs"


@dataclass(frozen=True)
class Config:
    # PromQL label matchers that select the auditor's series, e.g. 'job="egress-auditor"' or
    # 'job="egress-auditor", cluster="aks-prod"'. Every rule and dashboard variable uses it.
    selector: str = 'job="egress-auditor"'
    # Grafana's root URL: alert annotations link to {dashboard_url}/d/<uid>.
    dashboard_url: str = "http://127.0.0.1:3000"
    # docs/runbooks.md as a web page: every alert links to {runbook_url}#<alert name, lower case>.
    runbook_url: str = f"{PROJECT_DOCS}/runbooks.md"
    # Thresholds.
    denied_window: str = "10m"
    finding_window: str = "15m"
    down_for: str = "2m"
    stalled_window: str = "10m"
    overflow_window: str = "15m"
    eviction_window: str = "15m"
    policy_change_window: str = "15m"
    service_tags_max_age_days: int = 30        # Microsoft republishes weekly
    malformed_ratio: float = 0.01              # malformed units per packet read...
    malformed_min_rate: float = 1.0            # ...and at least this many per second

    def sel(self, *extra: str) -> str:
        """`{selector, extra...}`: a metric's label matchers."""
        return "{" + ", ".join([self.selector, *extra]) + "}"

    def dashboard(self, uid: str) -> str:
        """An absolute link to one dashboard, narrowed to the alert's job and instance."""
        return (f"{self.dashboard_url.rstrip('/')}/d/{uid}"
                "?var-job={{ $labels.job }}&var-instance={{ $labels.instance }}")

    def runbook(self, alert: str) -> str:
        return f"{self.runbook_url}#{alert.lower()}"
