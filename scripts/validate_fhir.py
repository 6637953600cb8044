#!/usr/bin/env python3
"""Validates FHIR R4 documents: validate_fhir.py FILE...

Each FILE holds one JSON document, or one per line (JSON Lines): a Bundle or a single resource.
Every document and every Bundle entry resource is parsed with the R4 (4.0.1) models of
fhir.resources 6.4.0 (pydantic: unknown elements, wrong types, bad codes and bad primitive
formats are errors). On top, the PHD-IG shape the gateway promises is checked (invariants the
models do not enforce, e.g. obs-6: value[x] xor dataAbsentReason). Exit 1 on the first failure,
printing the document, the entry and why. Used by Tests/IoMTFHIRTests.
"""
import json
import math
import sys

import fhir.resources
from fhir.resources import construct_fhir_element

MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
PHD_CATEGORY = "http://hl7.org/fhir/uv/phd/CodeSystem/PhdObservationCategories"
GATEWAY_EXT = "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"


# Required bindings the fhir.resources 6.4.0 models do not enforce (they accept any code).
OBSERVATION_STATUS = {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                      "entered-in-error", "unknown"}
BUNDLE_TYPE = {"document", "message", "transaction", "transaction-response", "batch", "batch-response",
               "history", "searchset", "collection"}
HTTP_VERB = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"}
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
DATA_ABSENT_CODES = {"unknown", "asked-unknown", "temp-unknown", "not-asked", "asked-declined", "masked",
                     "not-applicable", "unsupported", "as-text", "error", "not-a-number", "negative-infinity",
                     "positive-infinity", "not-performed", "not-permitted"}


def reject_constant(name):
    raise ValueError(f"non-finite number {name}")


def check_observation(obs):
    """PHD-IG shape checks beyond the R4 models."""
    if obs.get("status") not in OBSERVATION_STATUS:
        return f"Observation.status {obs.get('status')!r} is not in the required value set"
    for holder in [obs] + obs.get("component", []):
        for c in holder.get("dataAbsentReason", {}).get("coding", []):
            if c.get("system") != DATA_ABSENT or c.get("code") not in DATA_ABSENT_CODES:
                return f"dataAbsentReason {c} is not a data-absent-reason code"
    value_keys = [k for k in obs if k.startswith("value")]
    if "component" in obs:
        if value_keys:
            return "compound observation with a top-level value"
        for c in obs["component"]:
            has_value = any(k.startswith("value") for k in c)
            if has_value == ("dataAbsentReason" in c):
                return "component needs exactly one of value[x] and dataAbsentReason"
            q = c.get("valueQuantity")
            if q and q.get("system") not in (UCUM, MDC):
                return "component quantity without UCUM/MDC system"
    elif (len(value_keys) == 1) == ("dataAbsentReason" in obs):
        return "needs exactly one of value[x] and dataAbsentReason (obs-6)"
    q = obs.get("valueQuantity")
    if q and (q.get("system") not in (UCUM, MDC) or "code" not in q or "value" not in q):
        return "valueQuantity needs value, system (UCUM) and code"
    codings = obs.get("code", {}).get("coding", [])
    if not any(c.get("system") == MDC and c.get("code", "").isdigit() for c in codings):
        return "code has no MDC coding"
    cats = [c for cc in obs.get("category", []) for c in cc.get("coding", [])]
    if not any(c.get("system") == PHD_CATEGORY and c.get("code") == "phd" for c in cats):
        return "category phd missing"
    vital = any(c.get("code") == "vital-signs" for c in cats)
    if vital and not any(c.get("system") == "http://loinc.org" for c in codings):
        return "vital-signs category without a LOINC coding"
    if not any(e.get("url") == GATEWAY_EXT for e in obs.get("extension", [])):
        return "gatewayDevice extension missing"
    for key in ("subject", "device", "effectiveDateTime", "identifier"):
        if key not in obs:
            return f"{key} missing"
    return None


def validate(doc):
    kind = doc.get("resourceType")
    construct_fhir_element(kind, doc)  # raises on any R4 model violation
    if kind == "Observation":
        return check_observation(doc)
    if kind == "Bundle":
        if doc.get("type") not in BUNDLE_TYPE or doc.get("type") not in ("transaction", "batch"):
            return "bundle type is not transaction/batch"
        for i, entry in enumerate(doc.get("entry", [])):
            res = entry.get("resource", {})
            try:
                construct_fhir_element(res.get("resourceType"), res)
            except Exception as e:  # noqa: BLE001 - report any model error
                return f"entry {i}: {e}"
            req = entry.get("request", {})
            if req.get("method") not in HTTP_VERB or req.get("method") != "POST" or not req.get("ifNoneExist", "").startswith("identifier="):
                return f"entry {i}: not a conditional create"
            if res.get("resourceType") == "Observation":
                problem = check_observation(res)
                if problem:
                    return f"entry {i}: {problem}"
        return None
    return None


def main() -> int:
    count = 0
    for path in sys.argv[1:]:
        with open(path) as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
        for n, line in enumerate(lines):
            try:
                doc = json.loads(line, parse_constant=reject_constant)
                problem = validate(doc)
            except Exception as e:  # noqa: BLE001
                problem = f"{type(e).__name__}: {e}"
            if problem:
                print(f"{path}:{n + 1}: invalid: {problem}")
                return 1
            count += 1
    print(f"validated {count} FHIR R4 document(s) with fhir.resources {fhir.resources.__version__} "
          f"(FHIR {fhir.resources.__fhir_version__})")
    return 0 if count else 1


if __name__ == "__main__":
    sys.exit(main())
