#!/usr/bin/env python3
"""Verdicts of Python's `jsonschema` (Draft 2020-12, with its format
checker) on replies to the schemas the constraint follows: number bounds,
string formats and patterns, allOf, keywords beside anyOf / $ref / enum.
tests/json_schema_oracle.rs checks that every reply the constraint lets
through is valid here, and that every valid reply written the way the
constraint writes them (properties in the schema's order, numbers without
an exponent where bounded, shaped strings without escapes) is let through.

    pip install 'jsonschema[format]==4.23.0'
    python3 tests/scripts/json_schema_fixture.py > tests/fixtures/json_schema/verdicts.json
"""
import json
import sys

import jsonschema

# (schema, [(reply text, written as the constraint writes: bool), ...])
CASES = [
    (
        {"type": "object", "properties": {
            "n": {"type": "integer", "minimum": -5, "exclusiveMaximum": 100},
            "x": {"type": "number", "exclusiveMinimum": 0.1, "maximum": 2.5}},
         "required": ["n"]},
        [
            ('{"n": -5}', True), ('{"n": -6}', True), ('{"n": 99}', True), ('{"n": 100}', True),
            ('{"n": 0, "x": 0.1}', True), ('{"n": 0, "x": 0.10001}', True),
            ('{"n": 0, "x": 2.5}', True), ('{"n": 0, "x": 2.50}', True), ('{"n": 0, "x": 2.5000001}', True),
            ('{"n": 0, "x": 1e0}', False), ('{"n": 0, "x": 3}', True), ('{"n": 1.0}', False),
            ('{"n": -0}', True), ('{"n": 7, "x": 0.2}', True),
        ],
    ),
    (
        {"type": "object", "properties": {
            "big": {"type": "integer", "minimum": 1e20},
            "tiny": {"type": "number", "maximum": -1e-7}}},
        [
            ('{"big": 100000000000000000000}', True), ('{"big": 99999999999999999999}', True),
            ('{"tiny": -0.0000001}', True), ('{"tiny": -0.00000009}', True), ('{"tiny": -1}', True),
        ],
    ),
    (
        {"type": "object", "properties": {
            "day": {"type": "string", "format": "date"},
            "at": {"type": "string", "format": "date-time"},
            "t": {"type": "string", "format": "time"},
            "id": {"type": "string", "format": "uuid"},
            "ip": {"type": "string", "format": "ipv4"}}},
        [
            ('{"day": "2024-02-29"}', True), ('{"day": "2023-02-29"}', True), ('{"day": "2000-02-29"}', True),
            ('{"day": "1900-02-29"}', True), ('{"day": "2024-04-31"}', True), ('{"day": "2024-12-31"}', True),
            ('{"day": "2024-1-05"}', True), ('{"day": "20240105"}', True),
            ('{"at": "2024-06-01T12:30:00Z"}', True), ('{"at": "2024-06-01T12:30:00.5+02:00"}', True),
            ('{"at": "2024-06-01T24:00:00Z"}', True), ('{"at": "2024-06-01T12:30:00"}', True),
            ('{"t": "23:59:59-08:00"}', True), ('{"t": "23:60:00Z"}', True),
            ('{"id": "123e4567-e89b-12d3-a456-426614174000"}', True),
            ('{"id": "123e4567-e89b-12d3-a456-42661417400"}', True),
            ('{"ip": "192.168.0.1"}', True), ('{"ip": "256.1.1.1"}', True), ('{"ip": "1.2.3"}', True),
            ('{"ip": "01.2.3.4"}', True),
        ],
    ),
    (
        {"type": "object", "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3,4}$"},
            "word": {"type": "string", "pattern": "ab+c"},
            "pick": {"type": "string", "pattern": "^(?:red|green)(-dark)?$"}}},
        [
            ('{"code": "AB-123"}', True), ('{"code": "AB-12345"}', True), ('{"code": "ab-123"}', True),
            ('{"word": "xxabbbcyy"}', True), ('{"word": "ac"}', True), ('{"word": "a\\u0062c"}', False),
            ('{"pick": "green-dark"}', True), ('{"pick": "blue"}', True), ('{"pick": "red-"}', True),
        ],
    ),
    (
        {"$defs": {"Base": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1}},
                            "required": ["id"]}},
         "allOf": [{"$ref": "#/$defs/Base"},
                   {"properties": {"tag": {"type": "string", "enum": ["a", "b", 3]}}}]},
        [
            ('{"id": 1}', True), ('{"id": 0}', True), ('{"id": 2, "tag": "b"}', True),
            ('{"id": 2, "tag": 3}', True), ('{"tag": "a"}', True),
        ],
    ),
    (
        {"type": "object", "properties": {"kind": {"type": "string"}}, "required": ["kind"],
         "anyOf": [{"properties": {"n": {"type": "integer"}}, "required": ["n"]},
                   {"properties": {"s": {"type": "string", "format": "date"}}, "required": ["s"]}]},
        [
            ('{"kind": "x", "n": 1}', True), ('{"kind": "x", "s": "2020-01-01"}', True),
            ('{"kind": "x", "s": "2020-13-01"}', True), ('{"n": 1}', True), ('{"kind": "x"}', True),
        ],
    ),
]


def main():
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    out = []
    for schema, replies in CASES:
        v = jsonschema.Draft202012Validator(schema, format_checker=checker)
        verdicts = []
        for text, canonical in replies:
            verdicts.append({"reply": text, "canonical": canonical,
                             "valid": v.is_valid(json.loads(text))})
        out.append({"schema": schema, "replies": verdicts})
    json.dump({"jsonschema": "4.23.0", "cases": out}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
