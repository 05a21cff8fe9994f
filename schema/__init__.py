"""JSON Schema of the flow files (flow.schema.json)."""

from pathlib import Path

FLOW_SCHEMA_PATH = Path(__file__).with_name("flow.schema.json")
