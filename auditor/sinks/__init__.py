"""Outputs: JSON-lines audit events, Prometheus metrics, the end-of-run summary."""

