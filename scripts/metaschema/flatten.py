"""Writes JSON Schema 2020-12's meta-schema as one self-contained document for Chorus's
validator (schemas/json-schema-2020-12.json), from the published meta-schema and its seven
vocabularies as the `jsonschema-specifications` package ships them (pinned in
scripts/conformance/requirements.txt).

Chorus's validator resolves local `$ref`s only and has no `$dynamicRef`, so: each vocabulary
becomes `$defs/<name>`; a `$ref` to a vocabulary (`meta/validation#/$defs/x`) becomes a
local pointer (`#/$defs/validation/$defs/x`); `$dynamicRef: "#meta"` — "the meta-schema in
use" — becomes `$ref: "#"`, the whole document, which is what it resolves to when this
meta-schema validates a schema. Nothing else changes. The test suite runs this script and
compares its output with the shipped file byte for byte.

Usage: python flatten.py [OUT]   (default: stdout)
"""
import json
import sys
from importlib import resources

VOCABULARIES = ["core", "applicator", "unevaluated", "validation", "meta-data", "format-annotation", "content"]
BASE = "https://json-schema.org/draft/2020-12/"


def load(relative):
    root = resources.files("jsonschema_specifications") / "schemas" / "draft202012"
    return json.loads((root / relative).read_text())


def rewrite(node, vocabulary):
    """`node` with references made local; `vocabulary` names the document it came from."""
    if isinstance(node, list):
        return [rewrite(item, vocabulary) for item in node]
    if not isinstance(node, dict):
        return node
    result = {}
    for key, value in node.items():
        # Keywords of this document itself (a string or an object of flags); the same names
        # under `properties` are keyword definitions (objects), kept and rewritten.
        if key in ("$schema", "$id", "$dynamicAnchor") and isinstance(value, str) or key == "$vocabulary" and "type" not in value:
            continue
        if key == "$dynamicRef" and isinstance(value, str):
            assert value == "#meta", value
            result["$ref"] = "#"
        elif key == "$ref" and isinstance(value, str):
            result["$ref"] = local(value, vocabulary)
        else:
            result[key] = rewrite(value, vocabulary)
    return result


def local(ref, vocabulary):
    if ref.startswith(BASE):
        ref = ref[len(BASE):]
    document, _, fragment = ref.partition("#")
    if document.startswith("meta/"):
        vocabulary = document[len("meta/"):]
    elif document:
        raise ValueError("unexpected reference " + ref)
    prefix = "#" if vocabulary is None else "#/$defs/" + vocabulary
    return prefix + fragment if fragment else prefix


def flatten():
    top = load("metaschema.json")
    out = {
        "$comment": "JSON Schema 2020-12's meta-schema and vocabularies as one document (scripts/metaschema/flatten.py); "
                    "$dynamicRef #meta is $ref #.",
    }
    out.update(rewrite(top, None))
    out["$defs"] = {name: rewrite(load("vocabularies/" + name), name) for name in VOCABULARIES}
    return json.dumps(out, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    text = flatten()
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
