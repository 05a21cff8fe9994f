"""Fixtures for the SimpleOne emulator's tests: the emulator on loopback and plain HTTP to it."""

from tests.simpleone_fixtures import clock, creds, emulator, raw

__all__ = ["clock", "creds", "emulator", "raw"]
