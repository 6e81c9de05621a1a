"""Reading a policy file safely: size cap, SafeLoader only, no aliases, bounded nesting,
and the line of every mapping key so errors can point at `policy.yaml:14`.

YAML mappings come back as `LineDict` (a dict with `.line` and `.key_lines`), sequences as
`LineList` (`.line`, `.item_lines`). JSON is parsed with `json` (no line numbers, but
duplicate keys are detected the same way).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent

from . import bicep
from .lines import LineDict, LineList
from .model import PolicyError

MAX_POLICY_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 32


class _Loader(yaml.SafeLoader):
    """SafeLoader that records lines, rejects aliases and duplicate keys, and caps depth."""

    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(None, None, "YAML aliases are not accepted in a policy",
                                       event.start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.MarkedYAMLError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                           self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        out = LineDict()
        out.line = node.start_mark.line + 1
        out.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise yaml.MarkedYAMLError(None, None, "mapping keys must be scalars",
                                           key_node.start_mark)
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                raise yaml.MarkedYAMLError(None, None, f"duplicate key {key!r}",
                                           key_node.start_mark)
            out[key] = self.construct_object(value_node, deep=True)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out

    def construct_sequence(self, node, deep=False):
        out = LineList(self.construct_object(child, deep=True) for child in node.value)
        out.line = node.start_mark.line + 1
        out.item_lines = [child.start_mark.line + 1 for child in node.value]
        return out


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_sequence)


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict:
    out = LineDict()
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _depth(obj: Any) -> int:
    """Nesting depth without recursion (the document may be hostile)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node)
    return deepest


def strip_json_comments(text: str) -> str:
    """ARM template JSON may carry `//` and `/* */` comments (Azure's deployment engine and
    Microsoft's own samples use them). Blank them out, keeping every line and column where it
    was so JSON errors still point at the right place; strings are left untouched."""
    out = list(text)
    i, n, in_string = 0, len(text), False
    while i < n:
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 2
                continue
            in_string = ch != '"'
        elif ch == '"':
            in_string = True
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out[i:end] = " " * (end - i)
            i = end
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out[i:end] = [c if c == "\n" else " " for c in text[i:end]]
            i = end
            continue
        i += 1
    return "".join(out)


def _looks_like_json(text: str) -> bool:
    return strip_json_comments(text[:65536]).lstrip().startswith(("{", "["))


def read_document(path: str | Path) -> tuple[Any, bytes, str]:
    """(parsed document, raw bytes, "yaml"|"json"|"bicep"); PolicyError with one line on any
    failure. JSON may carry ARM's comments; `.bicep`/`.bicepparam` files are read by `bicep`."""
    name = str(path)
    try:
        p = Path(path)
        if p.is_dir():
            raise PolicyError(name, "is a directory, not a policy file")
        with p.open("rb") as fh:
            raw = fh.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise PolicyError(name, f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(name, f"larger than {MAX_POLICY_BYTES // (1024 * 1024)} MB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PolicyError(name, f"not UTF-8 text (byte {exc.start})") from None
    if p.suffix.lower() in (".bicep", ".bicepparam"):
        try:
            return bicep.read(text), raw, "bicep"
        except bicep.BicepError as exc:
            raise PolicyError(name, f"invalid Bicep: {exc}", line=exc.line) from None
    if _looks_like_json(text):
        try:
            doc = json.loads(strip_json_comments(text), object_pairs_hook=_json_pairs)
        except json.JSONDecodeError as exc:
            raise PolicyError(name, f"invalid JSON: {exc.msg} (column {exc.colno})",
                              line=exc.lineno) from None
        except ValueError as exc:
            raise PolicyError(name, f"invalid JSON: {exc}") from None
        except RecursionError:
            raise PolicyError(name, f"invalid JSON: nested deeper than {MAX_DEPTH} levels") from None
        if _depth(doc) > MAX_DEPTH:
            raise PolicyError(name, f"invalid JSON: nested deeper than {MAX_DEPTH} levels")
        return doc, raw, "json"
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "YAML error"
        if "could not determine a constructor" in str(exc):
            problem = "YAML tags are not accepted in a policy"
        raise PolicyError(name, f"invalid YAML: {problem}",
                          line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        text = getattr(exc, "problem", None) or str(exc).split("\n")[0]
        raise PolicyError(name, f"invalid YAML: {' '.join(str(text).split())}",
                          line=mark.line + 1 if mark else None) from None
    except RecursionError:
        raise PolicyError(name, f"invalid YAML: nested deeper than {MAX_DEPTH} levels") from None
    return doc, raw, "yaml"


def sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()
