"""Load a flow set: parse, validate, build, lint and compile — all or nothing."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.actions import REGISTRY
from engine.actions.registry import ActionRegistry
from engine.dialogue.catalog_search import index_of
from engine.dialogue.machine import machine_of
from engine.flows.build import Built, build, flow_set_version
from engine.flows.findings import Finding, Severity
from engine.flows.lint import lint
from engine.flows.model import BotSettings, FlowSet, StateSpec
from engine.flows.schema import ValidFlowCache, check_schema
from engine.flows.text import normalize_text
from engine.flows.yamlsrc import YamlDoc, load_yaml_file

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml")


@dataclass(slots=True)
class LoadResult:
    flow_set: FlowSet | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]


def collect_files(paths: Sequence[Path]) -> tuple[list[Path], list[Finding]]:
    """The flow files named by paths: files as given, directories' *.yaml (not recursive)."""
    files: list[Path] = []
    findings: list[Finding] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            findings.append(Finding(str(path), 1, 1, "F001", "no such file or directory"))
    return files, findings


def typed_commands(bot: BotSettings, states: Mapping[str, StateSpec]) -> dict[str, str]:
    """Text that is a command at every step: the bot's own words first, then what the main menu's
    and the footer's buttons say, where they raise a global event (people type what they see)."""
    typed = dict(bot.commands)
    rows = [*states[bot.start].buttons, *bot.footer] if bot.start in states else [*bot.footer]
    for row in rows:
        for button in row:
            if button.event in bot.global_on:
                typed.setdefault(normalize_text(button.label), button.event)
    return typed


def _schema_docs(paths: Sequence[Path], cache: ValidFlowCache | None = None
                 ) -> tuple[list[Path], list[tuple[str, YamlDoc]], list[Finding]]:
    """The files found, each one's YAML that passes the schema with its kind, and the findings."""
    files, findings = collect_files(paths)
    docs: list[tuple[str, YamlDoc]] = []
    for path in files:
        doc, problems = load_yaml_file(path)
        findings.extend(problems)
        if doc is None:
            continue
        kind, problems = check_schema(doc, cache)
        findings.extend(problems)
        if kind is not None and not problems:
            docs.append((kind, doc))
    return files, docs, findings


def load_flow_set(paths: Sequence[Path], registry: ActionRegistry = REGISTRY, *,
                  schema_cache: ValidFlowCache | None = None) -> LoadResult:
    """schema_cache: files jsonschema passed before, by their exact content (the bot's commands
    keep one; without it every file is validated)."""
    files, docs, findings = _schema_docs(paths, schema_cache)
    texts = [(Path(doc.path).name, doc.source) for _, doc in docs]
    if len(docs) != len(files) or not files:
        # Cross-file checks on a partial set would only echo the errors above as unknown targets.
        if not files:
            findings.append(Finding(", ".join(str(p) for p in paths), 1, 1, "F070", "no flow files (*.yaml) found"))
        findings.sort(key=lambda f: (f.path, f.line, f.col, f.code))
        return LoadResult(None, findings)
    built = build(docs)
    findings.extend(built.findings)
    findings.extend(lint(built, registry, ", ".join(str(p) for p in paths)))
    findings.sort(key=lambda f: (f.path, f.line, f.col, f.code))
    result = LoadResult(None, findings)
    if result.errors or built.bot is None or built.catalog is None or built.tickets is None:
        return result
    states = {name: st for flow in built.flows.values() for name, st in flow.states.items()}
    file_slots = {st.input.slot: st.input for st in states.values()
                  if st.input is not None and st.input.kind == "attachments"}
    result.flow_set = FlowSet(
        version=flow_set_version(texts),
        flows=built.flows,
        states=states,
        catalog=built.catalog,
        bot=built.bot,
        tickets=built.tickets,
        files=tuple(str(p) for p in files),
        file_slots=file_slots,
        typed_commands=typed_commands(built.bot, states),
    )
    # Compiled now, so that a reload swaps in a flow set ready to run and no user's message pays
    # for it: the machine, and the catalogue's search index.
    machine_of(result.flow_set)
    index_of(result.flow_set)
    return result


def build_alone(paths: Sequence[Path]) -> tuple[Built | None, list[Finding]]:
    """The flows of these files read on their own, without the rest of the set and unlinted
    (for drawing one file: steps of flows not given stay references). None if a file is not
    valid YAML of the schema."""
    _files, docs, findings = _schema_docs(paths)
    if findings or not docs:
        return None, findings
    return build(docs), findings
