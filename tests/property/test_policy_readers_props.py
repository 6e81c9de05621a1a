"""Property tests for the policy readers that take text a user (or an attacker who controls a
repository's templates) wrote: ARM JSON comments and Bicep object literals."""
from __future__ import annotations

import json

from hypothesis import given, settings, strategies as st

from auditor.errors import PolicyError
from auditor.policy import bicep
from auditor.policy.azure import load_policy_lenient
from auditor.policy.loader import strip_json_comments

# Generating nested values dominates these tests' time; a few hundred documents exercise every
# construct (the byte-level test below keeps the profile's full count).
STRUCTURED = settings(max_examples=300)

# JSON-like values (the data subset Bicep literals and ARM JSON share).
_KEY = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00"),
                max_size=12)
_SCALAR = st.one_of(st.booleans(), st.none(), st.integers(-10**6, 10**6), _TEXT)
VALUES = st.recursive(_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_KEY, inner, max_size=4)), max_leaves=20)


@STRUCTURED
@given(VALUES)
def test_json_without_comments_is_untouched(value):
    text = json.dumps(value)
    assert strip_json_comments(text) == text


@STRUCTURED
@given(st.dictionaries(_KEY, VALUES, min_size=1, max_size=4), st.data())
def test_comments_between_tokens_change_nothing_but_keep_lines(value, data):
    """ARM comments anywhere between tokens (also `//` and `/*` inside strings, which are data)."""
    text = json.dumps(value, indent=1)
    lines = text.split("\n")
    out = []
    for line in lines:
        kind = data.draw(st.sampled_from(["", "line", "block"]))
        out.append(line + (" // note */ 'x'" if kind == "line" else " /* a\n b // c */" if kind == "block" else ""))
    commented = "/* head */\n" + "\n".join(out)
    stripped = strip_json_comments(commented)
    assert json.loads(stripped) == value
    assert stripped.count("\n") == commented.count("\n")          # error lines stay right


def _bicep(value, indent: int = 0) -> str:
    """A Bicep literal for `value` (multi-line objects and arrays, single-quoted strings)."""
    pad = "  " * indent
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${") + "'"
    if isinstance(value, list):
        return "[\n" + "".join(f"{pad}  {_bicep(v, indent + 1)}\n" for v in value) + pad + "]"
    return "{\n" + "".join(f"{pad}  {k}: {_bicep(v, indent + 1)}\n" for k, v in value.items()) + pad + "}"


@STRUCTURED
@given(st.dictionaries(_KEY, VALUES, max_size=5))
def test_bicep_literals_read_back_as_data(value):
    source = ("param location string = resourceGroup().location\n"
              "resource ws 'Microsoft.MachineLearningServices/workspaces@2024-04-01' = {\n"
              "  properties: {\n    managedNetwork: " + _bicep(value, 2) + "\n  }\n}\n")
    doc = bicep.read(source)
    assert doc["resources"][0]["properties"]["managedNetwork"] == value


@given(st.text(max_size=300))
def test_any_bicep_text_is_data_or_one_clear_error(text):
    source = "module m 'x.bicep' = {\n  params: {\n    managedNetworkSettings: {" + text
    try:
        bicep.read(source)
    except bicep.BicepError as exc:
        assert exc.line >= 1 and "\n" not in str(exc)


@settings(max_examples=500)     # each example writes a file: the file system, not the reader, is the cost
@given(st.binary(max_size=400), st.sampled_from(["p.json", "p.bicep", "p.yaml"]))
def test_any_policy_bytes_load_or_fail_in_one_line(tmp_path_factory, raw, name):
    path = tmp_path_factory.mktemp("p") / name
    path.write_bytes(b"/* arm */ " + raw if name.endswith(".json") else raw)
    try:
        _, problems = load_policy_lenient(path)
    except PolicyError as exc:
        assert "\n" not in str(exc)
    else:
        assert all("\n" not in str(p) for p in problems)
