"""`flowlint`: check the flows, draw them, run their conversation tests."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.flows.findings import Finding, Severity
from engine.load import load_flow_set
from supportbot.config import DEFAULT_MAIL_DOMAIN, PROJECT_ROOT

EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def default_flows() -> Path:
    local = Path("flows")
    return local if local.is_dir() else PROJECT_ROOT / "flows"


def _paths(raw: Sequence[str], fallback: Path) -> list[Path]:
    paths = [Path(p) for p in raw] or [fallback]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SystemExit(_usage(f"no such file or directory: {', '.join(missing)}"))
    return paths


def _usage(message: str) -> int:
    print(f"flowlint: {message}", file=sys.stderr)
    return EXIT_USAGE


def _line(f: Finding) -> str:
    prefix = "warning: " if f.severity is Severity.WARNING else ""
    return f"{f.path}:{f.line}:{f.col}: {f.code} {prefix}{f.message}"


LOG_FORMAT = "    log %(levelname)s %(name)s: %(message)s"


class _Captured(logging.Handler):
    """The bot's log lines during one conversation test, to show if it fails."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"log {record.levelname} {record.name}: {record.getMessage()}")


def cmd_check(args: argparse.Namespace) -> int:
    paths = _paths(args.paths, default_flows())
    started = time.perf_counter()
    result = load_flow_set(paths)
    took = time.perf_counter() - started
    if args.format == "json":
        print(json.dumps([f.as_dict() for f in result.findings], ensure_ascii=False, indent=2))
    else:
        for finding in result.findings:
            print(_line(finding))
        errors = len(result.errors)
        warnings = len(result.findings) - errors
        print(f"flowlint: {errors} error(s), {warnings} warning(s) in {took * 1000:.0f} ms", file=sys.stderr)
    return EXIT_FINDINGS if result.findings else EXIT_CLEAN


README_BEGIN = "<!-- flowlint graph: begin (flowlint graph --write-readme regenerates this block) -->"
README_END = "<!-- flowlint graph: end -->"


def _graph_model(paths: list[Path]) -> tuple[dict[str, Any], list[str] | None] | int:
    """The map model to draw, and the flows to draw (None: all). Files given are drawn alone:
    the whole directory is loaded for the other flows' steps they lead to, and if it does not
    load (or the file is not in one), the file is read on its own and those steps are references."""
    from engine.flows.readable import readable_model, readable_model_of
    from engine.load import build_alone

    files = [p for p in paths if p.is_file()]
    if not files:
        result = load_flow_set(paths)
        if result.flow_set is None:
            for finding in result.errors:
                print(_line(finding), file=sys.stderr)
            return EXIT_FINDINGS
        return readable_model(result.flow_set), None
    alone, findings = build_alone(files)
    if alone is None:
        for finding in findings:
            print(_line(finding), file=sys.stderr)
        return EXIT_FINDINGS
    wanted = list(alone.flows)
    if not wanted:
        return _usage(f"no flow (top-level key 'flow') in {', '.join(map(str, files))}")
    around = sorted({p.parent for p in files} | {p for p in paths if p.is_dir()})
    whole = load_flow_set(around)
    if whole.flow_set is not None and all(name in whole.flow_set.flows for name in wanted):
        return readable_model(whole.flow_set), wanted
    print(f"flowlint: {', '.join(map(str, files))} drawn on its own (the flows around it do not load); "
          "steps of other flows are drawn as references", file=sys.stderr)
    return readable_model_of(alone.flows, alone.bot), wanted


def _render(model: dict[str, Any], fmt: str, flows: list[str] | None) -> str:
    from engine.flows.graph import dot, mermaid
    from engine.flows.map_svg import render_svg

    if flows is not None and len(flows) > 1:
        model = {**model, "flows": {name: model["flows"][name] for name in flows}}
    flow = flows[0] if flows is not None and len(flows) == 1 else None
    draw = {"mermaid": mermaid, "dot": dot, "svg": render_svg}[fmt]
    return draw(model, flow)


def readme_block(diagram: str) -> str:
    return f"{README_BEGIN}\n```mermaid\n{diagram}```\n{README_END}"


def _readme(args: argparse.Namespace, model: dict[str, Any]) -> int:
    from engine.flows.graph import mermaid

    path = Path(args.check_readme or args.write_readme)
    text = path.read_text(encoding="utf-8")
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        return _usage(f"{path}: no diagram block: put the lines\n  {README_BEGIN}\n  {README_END}\n"
                      "where the diagram goes, then run flowlint graph --write-readme")
    fresh = text[:begin] + readme_block(mermaid(model)) + text[end + len(README_END):]
    if fresh == text:
        return EXIT_CLEAN
    if args.write_readme:
        path.write_text(fresh, encoding="utf-8")
        print(f"flowlint: {path}: diagram updated", file=sys.stderr)
        return EXIT_CLEAN
    line = text.count("\n", 0, begin) + 1
    print(f"{path}:{line}:1: the diagram is out of date with the flows; "
          f"update it with: flowlint graph --write-readme {path}")
    return EXIT_FINDINGS


def cmd_graph(args: argparse.Namespace) -> int:
    readme = args.check_readme or args.write_readme
    fallback = Path(readme).parent if readme and not args.paths else default_flows()
    found = _graph_model(_paths(args.paths, fallback))
    if isinstance(found, int):
        return found
    model, flows = found
    if readme:
        return _readme(args, model)
    if args.flow:
        if args.flow not in model["flows"]:
            return _usage(f"no flow '{args.flow}' (flows: {', '.join(model['flows'])})")
        flows = [args.flow]
    text = _render(model, args.format, flows)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_CLEAN


def _flows_given_as_a_path(args: argparse.Namespace) -> None:
    """`flowlint test flows`, typed as `flowlint check flows` is: a flows directory's own tests,
    run against it, rather than its flow files read as test files."""
    if args.flows or len(args.paths) != 1:
        return
    given = Path(args.paths[0])
    if (given / "tests").is_dir() and any(given.glob("*.yaml")):
        args.flows, args.paths = str(given), []


async def _run_tests(args: argparse.Namespace) -> int:
    # The bot's own warnings and errors (an emulated outage, a refusal a test provokes) are expected
    # here: they are kept and shown only under a test that fails; -v shows everything as it happens.
    captured = _Captured()
    root = logging.getLogger()
    level = root.level
    if args.verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=LOG_FORMAT)
    else:
        root.addHandler(captured)
        root.setLevel(logging.WARNING)
    try:
        return await _run_tests_logged(args, captured)
    finally:
        root.removeHandler(captured)
        root.setLevel(level)


async def _run_tests_logged(args: argparse.Namespace, captured: _Captured) -> int:
    from engine.actions.context import AuthPolicy
    from engine.convtest import load_conversations, run_all
    from supportbot.conversation_world import EmulatorWorld

    flows = Path(args.flows) if args.flows else default_flows()
    if not flows.exists():
        return _usage(f"no such flows directory: {flows}")
    result = load_flow_set([flows])
    if result.flow_set is None:
        for finding in result.errors:
            print(_line(finding))
        print("flowlint: the flows have errors; fix them before running conversations", file=sys.stderr)
        return EXIT_FINDINGS
    tests, problems = load_conversations(_paths(args.paths, flows / "tests"))
    for finding in problems:
        print(_line(finding))
    if args.k:
        tests = [t for t in tests if args.k.casefold() in t.name.casefold()]
    world = await EmulatorWorld.start(result.flow_set.tickets.tables, args.domains.split(","))
    captured.lines.clear()
    failed = 0

    def report(outcome: object) -> None:
        nonlocal failed
        from engine.convtest import Outcome

        assert isinstance(outcome, Outcome)
        if outcome.passed:
            if args.verbose:
                print(f"ok    {outcome.test.path}:{outcome.test.line}: {outcome.test.name}")
        else:
            failed += 1
            print(f"FAIL  {outcome.test.path}:{outcome.test.line}: {outcome.test.name}")
            for finding in outcome.failures:
                first, *details = _line(finding).split("\n")
                print("      " + first)
                for detail in details:
                    print(("      " + detail).rstrip())
            if captured.lines:
                print("      the bot's log during this test:")
                for line in captured.lines:
                    print("      " + line)
        captured.lines.clear()

    try:
        started = time.perf_counter()
        outcomes = await run_all(result.flow_set, tests, world, report,
                                 auth=AuthPolicy(domains=tuple(args.domains.split(","))))
    finally:
        await world.close()
    print(f"flowlint: {len(outcomes) - failed} passed, {failed} failed in "
          f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
    return EXIT_FINDINGS if failed or problems else EXIT_CLEAN


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowlint", description="Check, draw and test the bot's flows.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate flow files (exit 0 clean, 1 findings, 2 usage error)")
    check.add_argument("paths", nargs="*", help="files or directories (default: flows/)")
    check.add_argument("--format", choices=("text", "json"), default="text")
    graph = sub.add_parser("graph", help="draw the flows: steps by what they say, arrows by the buttons that lead on")
    graph.add_argument("paths", nargs="*", help="files or directories (default: flows/); a flow file: draw that flow")
    graph.add_argument("--format", choices=("mermaid", "dot", "svg"), default="mermaid")
    graph.add_argument("--flow", help="draw only this flow (its name, e.g. create_ticket)")
    graph.add_argument("-o", "--output", help="write to this file instead of stdout")
    readme = graph.add_mutually_exclusive_group()
    readme.add_argument("--check-readme", metavar="README",
                        help="exit 1 if the diagram block in this file is not what flowlint draws now")
    readme.add_argument("--write-readme", metavar="README", help="regenerate the diagram block in this file")
    test = sub.add_parser("test", help="run conversation tests (default: flows/tests/)")
    test.add_argument("paths", nargs="*", help="test files or directories (default: <flows>/tests)")
    test.add_argument("--flows", help="the flows directory (default: flows/)")
    test.add_argument("--domains", default=DEFAULT_MAIL_DOMAIN, help="mail domains allowed to sign in")
    test.add_argument("-k", help="only tests whose name contains this text")
    test.add_argument("-v", "--verbose", action="store_true", help="list passing tests too")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return cmd_check(args)
        if args.command == "graph":
            return cmd_graph(args)
        _flows_given_as_a_path(args)
        return asyncio.run(_run_tests(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
