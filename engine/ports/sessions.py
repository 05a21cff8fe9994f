"""The sessions port: a peer's dialogue, loaded and committed one step at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.ports.auth import SignInWrites
from engine.ports.notices import WatchedTicket
from engine.ports.outbox import OutboxItem, OutboxOutcome


@dataclass(slots=True)
class Session:
    """One peer's dialogue: plain data, restored onto the compiled machine per event."""

    peer: str
    state: str
    slots: dict[str, Any]
    flow_version: str
    updated_at: float
    # Bumped by every committed step; 0 means "never stored". Writers pass the version they
    # read, so a stale copy can never overwrite a newer step (optimistic concurrency).
    version: int = 0


@dataclass(slots=True)
class StepCommit:
    """Everything one engine step writes, committed in one transaction."""

    session: Session
    expected_version: int
    # The channel's event id, recorded in the inbox in the same transaction as the step.
    event_id: str | None = None
    # The step's replies (engine.replies.dump_replies), kept with the event until the channel
    # says they were delivered: a crash between commit and sending loses no answer.
    replies: str | None = None
    # Work for SimpleOne the step decided on, written with it or not at all (the outbox).
    outbox: Sequence[OutboxItem] = ()
    # A follow-up step (an outbox outcome told within the wait) with no event of its own: its
    # replies replace those still kept, unsent, for this earlier event.
    reply_of: str | None = None
    # Outcomes the worker handed to this step to record with it (Storage.outbox_finish's
    # semantics; item.told says whether this step tells it): told and recorded in one
    # transaction, one round trip. If one of them is not pending any more (recorded meanwhile,
    # so told already), the step fails.
    finish: Sequence[OutboxOutcome] = ()
    # The peer's sign-in as the step changed it (a code mailed or tried, a binding made or
    # dropped): a step that does not commit changed nothing.
    sign_in: SignInWrites | None = None
    # Tickets the step found the user owns, followed from now on for status notices.
    watch: Sequence[WatchedTicket] = ()
    # Counters the step's transitions named (`count:` in YAML), each counted once more today.
    counts: Sequence[str] = ()
    # session.slots already serialised as compact JSON (engine.dialogue.sessions.slots_text), to
    # be written as it is: the engine's cache keeps the same text, so it is made once.
    slots_text: str | None = None


class SessionStore(Protocol):
    """Sessions: read one, commit a step (with its event, replies and outbox work)."""

    async def load_session(self, peer: str) -> Session | None: ...

    async def commit_step(self, step: StepCommit) -> bool:
        """Write the session at version expected_version + 1 and mark its event (if any) handled.

        Returns False, writing nothing, when the stored version is not expected_version
        (another writer got there first) or the event was handled already (a duplicate: the
        inbox's key decides, no read comes before the step). The step is captured when the call
        is made; concurrent calls may be committed together, each answered only after its
        transaction commits.
        """
        ...
