"""The fake VK server's `execute`: the subset of VKScript the bot sends.

dev.vk.com/ru/method/execute: `code` is a VKScript program that must end with
`return %expression%;`, statements separated by semicolons, with at most 25 calls of API
methods in it. Calls that fail inside do not stop the script: each is `false` in the result,
and its error is listed, in order, in `execute_errors` beside the response as
{"method", "error_code", "error_msg"} (as VK answers, e.g. github.com/voronind/vk/issues/42).

Understood here: `return [API.a.b({...}), API.c.d({...}), ...];` — an array of method calls,
each with one object literal written as JSON (the shape adapters/vk/sender.py builds). Anything
else is refused as VK refuses a script it cannot compile (error 12); more than 25 calls is a
runtime error (13).
"""

from __future__ import annotations

import json
import re

__all__ = ["MAX_CALLS", "ScriptError", "parse_script"]

MAX_CALLS = 25
_METHOD = re.compile(r"API\.([A-Za-z]+(?:\.[A-Za-z]+)+)\(")
_SPACE = re.compile(r"\s*")
_decoder = json.JSONDecoder()


class ScriptError(Exception):
    """The script is refused as a whole: code 12 (does not compile) or 13 (runtime error)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _skip(code: str, at: int) -> int:
    match = _SPACE.match(code, at)
    return match.end() if match else at


def _expect(code: str, at: int, token: str) -> int:
    at = _skip(code, at)
    if not code.startswith(token, at):
        raise ScriptError(12, f"Unable to compile code: expected {token!r} at position {at}")
    return at + len(token)


def _param(value: object) -> str:
    """A parameter as VK reads it from the form: numbers and strings as their text."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, list):
        return ",".join(_param(v) for v in value)
    raise ScriptError(12, f"Unable to compile code: unsupported parameter value {value!r}")


def parse_script(code: str) -> list[tuple[str, dict[str, str]]]:
    """The method calls of `return [API.m({...}), ...];`, in order, their parameters as text."""
    at = _expect(code, 0, "return")
    at = _expect(code, at, "[")
    calls: list[tuple[str, dict[str, str]]] = []
    at = _skip(code, at)
    if not code.startswith("]", at):
        while True:
            at = _skip(code, at)
            match = _METHOD.match(code, at)
            if match is None:
                raise ScriptError(12, f"Unable to compile code: expected an API call at position {at}")
            try:
                params, at = _decoder.raw_decode(code, _skip(code, match.end()))
            except ValueError as exc:
                raise ScriptError(12, f"Unable to compile code: {exc}") from None
            if not isinstance(params, dict):
                raise ScriptError(12, "Unable to compile code: a method takes one object of parameters")
            calls.append((match.group(1), {str(k): _param(v) for k, v in params.items()}))
            at = _expect(code, at, ")")
            at = _skip(code, at)
            if code.startswith(",", at):
                at += 1
                continue
            break
    at = _expect(code, at, "]")
    at = _skip(code, at)
    if code.startswith(";", at):
        at = _skip(code, at + 1)
    if at != len(code):
        raise ScriptError(12, f"Unable to compile code: unexpected text at position {at}")
    if len(calls) > MAX_CALLS:
        raise ScriptError(13, "Runtime error occurred during code invocation: Too many API calls")
    return calls
