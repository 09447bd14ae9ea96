"""Prints, for each schema file named, whether the `jsonschema` package (an independent
implementation, pinned in scripts/conformance/requirements.txt) finds it valid against JSON
Schema 2020-12's published meta-schema: one line `NAME valid` or `NAME invalid`."""
import json
import sys

from jsonschema import Draft202012Validator

for path in sys.argv[1:]:
    with open(path) as f:
        schema = json.load(f)
    valid = Draft202012Validator(Draft202012Validator.META_SCHEMA).is_valid(schema)
    print(path.rsplit("/", 1)[-1], "valid" if valid else "invalid")
