"""The Elasticsearch index template and the ECS custom-field definition, generated from the
event models in `auditor.schema`, so the index and the events cannot disagree.

- `index_template()`: a composable index template (`PUT _index_template/egress-auditor`) whose
  mappings cover every field an event can carry. ECS fields get their ECS types (a field's
  `es` annotation, else keyword/long/float/boolean/date from its Python type);
  `egress_auditor.evidence` is `flattened`, so one detector's keys never conflict with
  another's.
- `ecs_custom_fields()`: the `egress_auditor` field set (and `tls.client.ja4`, which ECS 9.4
  lacks) in ECS's schema-file format, for `scripts/generator.py --include` of elastic/ecs.

`egress-auditor schema --index-template` / `--ecs-custom-fields` print them; the files in
`deploy/elasticsearch/` are these outputs (a test keeps them equal).
"""
from __future__ import annotations

import types
import typing
from datetime import datetime
from typing import Any, Literal, Union

from pydantic import BaseModel

from auditor import __version__, schema
from auditor.sinks.ecs import ECS_VERSION

_CUSTOM_ECS = {"tls.client.ja4"}     # outside `egress_auditor`, declared as custom


def _es_type(annotation: Any, extra: dict | None) -> Any:
    """The Elasticsearch type of a field (a dict of properties for a model)."""
    if extra and "es" in extra:
        return extra["es"]
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _es_type(args[0], None)
    if origin is list:
        return _es_type(typing.get_args(annotation)[0], None)
    if origin is Literal:
        return "keyword"
    if origin is dict:
        return "flattened"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _properties(annotation)
    return {str: "keyword", int: "long", float: "float", bool: "boolean",
            datetime: "date"}.get(annotation, "keyword")


def _properties(model: type[BaseModel]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else None
        out[info.alias or name] = _es_type(info.annotation, extra)
    return out


def _merge(into: dict, other: dict) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into.setdefault(key, value)


def _mapping(props: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in sorted(props.items()):
        if isinstance(value, dict):
            out[key] = {"properties": _mapping(value)}
        elif value == "keyword":
            out[key] = {"type": "keyword", "ignore_above": 1024}
        else:
            out[key] = {"type": value}
    return out


def event_properties() -> dict[str, Any]:
    """Every field of every event model, nested, with its Elasticsearch type."""
    merged: dict[str, Any] = {}
    for model in schema.MODELS:
        _merge(merged, _properties(model))
    return merged


def flat_types(props: dict[str, Any] | None = None, prefix: str = "") -> dict[str, str]:
    """`dotted.name -> type` for every leaf field."""
    out: dict[str, str] = {}
    for key, value in (event_properties() if props is None else props).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_types(value, name + "."))
        else:
            out[name] = value
    return out


DATA_STREAM = "logs-egress_auditor.events-*"   # Elastic's data stream naming: type-dataset-namespace


def index_template(pattern: str = DATA_STREAM) -> dict[str, Any]:
    """A data-stream template (what Filebeat and Elastic Agent write to); priority 200 wins
    over Elasticsearch's built-in `logs-*-*` (100)."""
    return {
        "index_patterns": [pattern],
        "data_stream": {},
        "priority": 200,
        "_meta": {"description": "egress-auditor audit events (ECS)", "ecs_version": ECS_VERSION,
                  "egress_auditor_version": __version__},
        "template": {
            "settings": {"index": {"mapping": {"total_fields": {"limit": 2000}}}},
            "mappings": {"dynamic": "true", "date_detection": False,
                         "properties": _mapping(event_properties())},
        },
    }


def _descriptions(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for name, info in model.model_fields.items():
        full = f"{prefix}{info.alias or name}"
        ann = info.annotation
        inner = [a for a in typing.get_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)]
        target = inner[0] if inner else ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if target is not None:
            out.update(_descriptions(target, full + "."))
        else:
            out[full] = info.description or ""
    return out


def ecs_custom_fields() -> list[dict[str, Any]]:
    """The custom field sets, in ECS's schemas/*.yml format."""
    types_ = flat_types()
    docs: dict[str, str] = {}
    for model in schema.MODELS:
        docs.update(_descriptions(model))
    ours = sorted(n for n in types_ if n.startswith("egress_auditor."))
    fields = [{"name": n[len("egress_auditor."):], "level": "custom", "type": types_[n],
               "description": docs.get(n) or n.rsplit(".", 1)[-1].replace("_", " ")}
              for n in ours]
    sets = [{"name": "egress_auditor", "title": "egress-auditor", "group": 2,
             "short": "Fields of egress-auditor that ECS has no field for.",
             "description": "Verdicts, naming, correlation and findings of egress-auditor "
                            "(docs/events.md).", "type": "group", "fields": fields}]
    for name in sorted(_CUSTOM_ECS):
        fset, rest = name.split(".", 1)
        sets.append({"name": fset, "title": fset.upper(), "group": 2, "type": "group",
                     "description": f"egress-auditor's extension of the ECS `{fset}` field set.",
                     "fields": [{"name": rest, "level": "custom", "type": types_[name],
                                 "description": docs.get(name) or rest}]})
    return sets


CUSTOM_ECS_FIELDS = frozenset(_CUSTOM_ECS)
