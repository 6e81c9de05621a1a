"""Exfiltration-risk detectors, one module each; the list of them is `registry.DETECTORS`."""
