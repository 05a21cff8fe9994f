"""Flows as data: YAML loaded, checked against the schema, built into the typed model, linted."""
