"""Taking what the user typed or attached in a state that expects input: validated, kept in
the session's slots (files in the spool), and acknowledged — nothing sent is lost silently."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from engine.dialogue.inputs import check_file, check_text, clean_text, limits
from engine.flows.model import TYPED, FlowSet, InputSpec, SayPart
from engine.ports import FileSpool, FileSpoolFull, Incoming, IncomingFile
from engine.text_safety import clean_file_name

log = logging.getLogger(__name__)


class Speaker(Protocol):
    """Where intake says what it did (the turn's reply)."""

    def say(self, parts: Sequence[SayPart], extra: dict[str, Any] | None = None) -> None: ...

    def message(self, name: str, extra: dict[str, Any] | None = None) -> None: ...

    def input_error(self, inp: InputSpec, error: str | None, extra: dict[str, Any]) -> None: ...


class Intake:
    def __init__(self, flows: FlowSet, spool: FileSpool, peer: str, slots: dict[str, Any],
                 speaker: Speaker) -> None:
        self.flows = flows
        self.spool = spool
        self.peer = peer
        self.slots = slots
        self.speaker = speaker

    async def text(self, inp: InputSpec, incoming: Incoming) -> bool:
        """Keep typed input in inp.slot; False (and said why) when it is not valid."""
        # Files sent along are kept first, whatever becomes of the text: nothing sent is lost.
        if inp.files_slot and (incoming.files or incoming.oversized):
            target = self.flows.file_slots.get(inp.files_slot)
            if target is not None:
                await self.files(target, Incoming(files=incoming.files, oversized=incoming.oversized),
                                 accepted=inp.accepted)
        verdict = check_text(inp, incoming.text)
        if not verdict.ok:
            self.speaker.input_error(inp, verdict.error, verdict.vars)
            return False
        self.slots[inp.slot] = verdict.value
        return True

    async def files(self, inp: InputSpec, incoming: Incoming, accepted: Sequence[SayPart] | None = None) -> bool:
        """Keep valid files in inp.slot; accepted: the text said per file (default: the input's).
        True when text came without a file and the input asks about it (ask_text): the text is
        in slot 'typed', for the caller to raise the event 'typed'."""
        files = [f for f in self.slots.get(inp.slot) or [] if isinstance(f, dict)]
        # Names as the user may see them and SimpleOne may get them: one safe path part.
        candidates: list[IncomingFile | tuple[str, int]] = [
            *(dataclasses.replace(f, name=clean_file_name(f.name)) for f in incoming.files),
            *((clean_file_name(name), size) for name, size in incoming.oversized)]
        for file in candidates:
            verdict = check_file(inp, file, len(files))
            if isinstance(file, tuple) and verdict.ok:
                # Too big for the channel to fetch, whatever this step would take.
                verdict.error = "file_too_big"
            if not verdict.ok:
                self.speaker.input_error(inp, verdict.error, verdict.vars)
                continue
            if isinstance(file, tuple):
                continue
            try:
                stored = await self.spool.put(self.peer, file.name, file.mime, file.data)
            except FileSpoolFull as exc:
                log.error("spool full, file of %s refused: %s", self.peer, exc)
                self.speaker.message("busy")
                continue
            files.append(stored.as_slot())
            self.speaker.say(inp.accepted if accepted is None else accepted,
                             {**limits(inp), **verdict.vars, "count": len(files), "left": inp.max_files - len(files)})
        self.slots[inp.slot] = files
        text = clean_text(incoming.text)
        if text and inp.text_slot:
            # Never cut: text that would not fit with what is there already is not taken, and
            # the user is told how long it would be (what was accepted stays exactly as it was).
            combined = f"{str(self.slots.get(inp.text_slot) or '').strip()}\n{text}".strip()
            if len(combined) > inp.max_length:
                self.speaker.input_error(inp, "too_long", {"count": len(combined)})
                return False
            if inp.ask_text and not candidates:
                self.slots[TYPED] = text
                return True
            self.slots[inp.text_slot] = combined
            self.speaker.say(inp.noted, {**limits(inp), "count": len(files)})
        elif text and not incoming.files:
            self.speaker.message("stray")
        return False
