"""Parsed policy documents that remember where each part was written, so an error can say
`policy.yaml:14`. Mappings are `LineDict` (`.line`, `.key_lines`), sequences `LineList`
(`.line`, `.item_lines`); every reader (YAML, Bicep) builds them."""
from __future__ import annotations


class LineDict(dict):
    line: int | None = None
    key_lines: dict

    def line_of(self, key: str) -> int | None:
        return getattr(self, "key_lines", {}).get(key, self.line)


class LineList(list):
    line: int | None = None
    item_lines: list
