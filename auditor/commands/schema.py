"""`egress-auditor schema`: the JSON Schema of the audit events (or, with `--settings`, of
the settings file)."""
from __future__ import annotations

import json

from auditor import schema
from auditor.errors import EXIT_OK
from auditor.settings import Settings


def main(args) -> int:
    if getattr(args, "settings", False):
        doc = Settings.model_json_schema()
        doc["title"] = "egress-auditor settings"
    else:
        doc = schema.json_schema()
    print(json.dumps(doc, indent=2))
    return EXIT_OK
