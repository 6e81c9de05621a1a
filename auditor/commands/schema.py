"""`egress-auditor schema`: the JSON Schema of the audit events; with `--settings`, of the
settings file; with `--index-template` / `--ecs-custom-fields`, the Elasticsearch index template
and the ECS custom-field definition generated from the same event models."""
from __future__ import annotations

import json

import yaml

from auditor import schema
from auditor.detect import registry
from auditor.errors import EXIT_OK
from auditor.settings import Settings
from auditor.sinks import index_template


def main(args) -> int:
    if getattr(args, "settings", False):
        doc = Settings.model_json_schema()
        doc["title"] = "egress-auditor settings"
    elif getattr(args, "index_template", False):
        doc = index_template.index_template()
    elif getattr(args, "ecs_custom_fields", False):
        print(yaml.safe_dump(index_template.ecs_custom_fields(), sort_keys=False, width=100), end="")
        return EXIT_OK
    else:
        doc = schema.json_schema({d.name: d.Evidence for d in registry.DETECTORS})
    print(json.dumps(doc, indent=2))
    return EXIT_OK
