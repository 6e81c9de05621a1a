"""Managed-network object literals in Bicep source (`.bicep`, `.bicepparam`).

Users keep their workspace in Bicep: a `Microsoft.MachineLearningServices/workspaces` resource
with `properties.managedNetwork: {...}`, an Azure Verified Module call with
`managedNetworkSettings: {...}`, or a `.bicepparam` file with `param managedNetworkSettings =
{...}`. Bicep is a language, not data, so this is not a Bicep parser: it finds those object
literals and reads them as data — strings, numbers, booleans, null, objects and arrays — while
anything computed (a parameter, `resourceGroup().location`, a module output, an interpolated
string) comes back as an `Expression`, which the policy reader reports instead of guessing.
"""
from __future__ import annotations

import re
from typing import Any

from .lines import LineDict, LineList

_TARGET = re.compile(r"\b(managedNetworkSettings|managedNetwork)\s*(?::|=)\s*\{")
_RESOURCE = re.compile(r"\bresource\s+\w+\s+'([^'@]+)@[^']*'")
_LOCATION = re.compile(r"^\s*location\s*:\s*'([A-Za-z0-9 ]+)'\s*$", re.MULTILINE)
MAX_DEPTH = 32


class Expression(str):
    """A Bicep value that is computed at deployment time (its source text)."""


class BicepError(ValueError):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


class _Reader:
    def __init__(self, text: str, pos: int) -> None:
        self.text, self.pos = text, pos

    def line(self, pos: int | None = None) -> int:
        return self.text.count("\n", 0, self.pos if pos is None else pos) + 1

    def skip(self, newlines: bool = True) -> None:
        """Skip blanks and comments (and line breaks when `newlines`)."""
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise BicepError("unterminated /* comment", self.line())
                self.pos = end + 2
            else:
                return

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise BicepError(f"nested deeper than {MAX_DEPTH} levels", self.line())
        self.skip()
        ch = self.text[self.pos:self.pos + 1]
        if ch == "{":
            return self.obj(depth)
        if ch == "[":
            return self.array(depth)
        if ch == "'" and not self.text.startswith("'''", self.pos):
            start = self.pos
            text = self.string()
            if self._at_end():
                return text
            self.pos = start           # 'a' == b ? ... : ... — an expression after all
        return self.expression()

    def _at_end(self) -> bool:
        save = self.pos
        self.skip(newlines=False)
        done = self.pos >= len(self.text) or self.text[self.pos] in "\n,}]"
        self.pos = save
        return done

    def string(self) -> str:
        out: list[str] = []
        self.pos += 1
        text = self.text
        computed = False
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "\\" and self.pos + 1 < len(text):
                nxt = text[self.pos + 1]
                out.append({"n": "\n", "t": "\t", "r": "\r", "$": "$"}.get(nxt, nxt))
                self.pos += 2
            elif ch == "'":
                self.pos += 1
                joined = "".join(out)
                return Expression("'" + joined + "'") if computed else joined
            elif ch == "\n":
                break
            else:
                if text.startswith("${", self.pos):
                    computed = True
                out.append(ch)
                self.pos += 1
        raise BicepError("unterminated string", self.line())

    def expression(self) -> Expression:
        """Source text up to the end of the value (a line break, `,`, `}` or `]` at depth 0)."""
        start, depth, text = self.pos, 0, self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "'":
                if text.startswith("'''", self.pos):
                    end = text.find("'''", self.pos + 3)
                    if end < 0:
                        raise BicepError("unterminated ''' string", self.line())
                    self.pos = end + 3
                    continue
                self.string()
                continue
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                if depth == 0:
                    break
                depth -= 1
            elif depth == 0 and ch in "\n,":
                break
            self.pos += 1
        raw = text[start:self.pos].strip()
        if not raw:
            raise BicepError("expected a value", self.line(start))
        if raw in ("true", "false"):
            return raw == "true"           # type: ignore[return-value]
        if raw == "null":
            return None                    # type: ignore[return-value]
        if re.fullmatch(r"-?\d+", raw):
            return int(raw)                # type: ignore[return-value]
        return Expression(raw)

    def obj(self, depth: int) -> LineDict:
        out = LineDict()
        out.line, out.key_lines = self.line(), {}
        self.pos += 1
        while True:
            self.skip()
            if self.pos >= len(self.text):
                raise BicepError("unterminated object", out.line)
            if self.text[self.pos] == "}":
                self.pos += 1
                return out
            if self.text[self.pos] == ",":
                self.pos += 1
                continue
            key_line = self.line()
            if self.text[self.pos] == "'":
                key = str(self.string())
            else:
                m = re.compile(r"[A-Za-z_$][\w$-]*").match(self.text, self.pos)
                if not m:
                    raise BicepError("expected a property name", key_line)
                key, self.pos = m.group(), m.end()
            self.skip(newlines=False)
            if self.text[self.pos:self.pos + 1] != ":":
                raise BicepError(f"expected ':' after {key!r}", key_line)
            self.pos += 1
            if key in out:
                raise BicepError(f"duplicate key {key!r}", key_line)
            out[key] = self.value(depth + 1)
            out.key_lines[key] = key_line

    def array(self, depth: int) -> LineList:
        out = LineList()
        out.line, out.item_lines = self.line(), []
        self.pos += 1
        while True:
            self.skip()
            if self.pos >= len(self.text):
                raise BicepError("unterminated array", out.line)
            if self.text[self.pos] == "]":
                self.pos += 1
                return out
            if self.text[self.pos] == ",":
                self.pos += 1
                continue
            out.item_lines.append(self.line())
            out.append(self.value(depth + 1))


def read(text: str) -> dict:
    """A document the policy reader understands: an ARM-like `resources` list holding each
    `managedNetwork` literal (with its resource's type and literal location), or
    `{"managedNetworkSettings": ...}` for a module/param file. BicepError names the line."""
    found = [m for m in _TARGET.finditer(text) if not _in_comment(text, m.start())]
    if not found:
        raise BicepError("no managedNetwork or managedNetworkSettings object in this Bicep file", 1)
    m = found[0]
    reader = _Reader(text, m.end() - 1)
    value = reader.obj(1)
    if m.group(1) == "managedNetworkSettings":
        return {"managedNetworkSettings": value}
    before = text[:m.start()]
    resources = _RESOURCE.findall(before)
    rtype = resources[-1] if resources else "Microsoft.MachineLearningServices/workspaces"
    res: dict[str, Any] = {"type": rtype, "properties": {"managedNetwork": value}}
    start = before.rfind("resource ")
    loc = _LOCATION.search(text, start if start >= 0 else 0, m.start())
    if loc:
        res["location"] = loc.group(1)
    return {"resources": [res]}


def _in_comment(text: str, pos: int) -> bool:
    line_start = text.rfind("\n", 0, pos) + 1
    if "//" in text[line_start:pos]:
        return True
    return text.rfind("/*", 0, pos) > text.rfind("*/", 0, pos)
