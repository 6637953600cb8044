#!/usr/bin/env python3
"""Validates JSON documents against a schema: validate_json.py SCHEMA FILE...

Each FILE holds one JSON document, or one per line (JSON Lines). Exit 1 on the first invalid one,
printing which document and why. Used by the test suite to check the wire format.
"""
import json
import sys

import jsonschema


def main() -> int:
    schema_path, *files = sys.argv[1:]
    with open(schema_path) as f:
        schema = json.load(f)
    validator = jsonschema.Draft202012Validator(schema)
    count = 0
    for path in files:
        with open(path) as f:
            text = f.read()
        docs = [text] if text.lstrip().startswith("{") and "\n{" not in text.strip() else text.splitlines()
        for i, doc in enumerate(d for d in docs if d.strip()):
            errors = sorted(validator.iter_errors(json.loads(doc)), key=str)
            if errors:
                print(f"{path}:{i + 1}: {errors[0].message} at {list(errors[0].absolute_path)}")
                return 1
            count += 1
    print(f"validated {count} document(s) against {schema_path}")
    return 0 if count else 1


if __name__ == "__main__":
    sys.exit(main())
