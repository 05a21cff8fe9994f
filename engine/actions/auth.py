"""Sign-in: a code mailed to a corporate address binds the peer to a SimpleOne person."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
import math
import secrets

from engine.actions.context import ActionContext
from engine.actions.registry import Shape, action
from engine.ports import Binding, MailError, MailMessage, MailRecipientRefused, PendingCode, TicketSystemError

log = logging.getLogger(__name__)

CODE_DIGITS = 6
HOUR = 3600.0  # the window the send caps count in
_HASH_ITERATIONS = 60_000
AUTH = Shape.record("email", "domains", "wait_seconds", "wait_minutes", "has_code", "attempts_left", "minutes",
                    "verified")
USER = Shape.record("email", "name", "caller_id")


def hash_code(code: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", code.encode(), salt, _HASH_ITERATIONS)


def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def email_domain_allowed(email: str, domains: tuple[str, ...]) -> bool:
    domain = email.rpartition("@")[2].lower()
    return any(domain == d.lower() for d in domains)


def _user_slot(binding: Binding) -> dict[str, str]:
    return {"email": binding.email, "name": binding.name, "caller_id": binding.caller_id}


@action("auth.check", emits={"signed_in", "signed_out"}, writes={"user": USER})
async def check(ctx: ActionContext) -> str:
    """Is this peer bound to a verified person?"""
    binding = await ctx.sign_in.binding()
    if binding is None:
        ctx.slots["user"] = {}
        return "signed_out"
    ctx.slots["user"] = _user_slot(binding)
    return "signed_in"


@action("auth.refresh", emits=set(), writes={"user": USER})
async def refresh(ctx: ActionContext) -> None:
    """Fill the `user` slot from the stored binding once per session (for texts such as the
    menu's); the sign-in actions keep it current after that, so the menu costs no extra read."""
    if "user" in ctx.slots:
        return None
    binding = await ctx.sign_in.binding()
    ctx.slots["user"] = _user_slot(binding) if binding else {}
    return None


@action("auth.send_code", emits={"sent", "bad_domain", "cooldown", "too_many", "mail_failed"},
        writes={"auth": AUTH}, outside=True)
async def send_code(ctx: ActionContext) -> str:
    """Mail a fresh code to the address in slot `email`, within the cooldown and hourly cap.

    The send is claimed against the caps before the letter leaves (atomically across users and
    workers) and taken back if the mail server is down; the code is committed with the step. If
    the process dies after the letter went and before the commit, the event is handled again
    and a second letter goes (counted too): only its code works, and the reply names that one."""
    policy = ctx.services.auth
    email = str(ctx.slots.get("email", "")).strip().lower()
    auth = ctx.record("auth")
    auth["domains"] = ", ".join("@" + d for d in policy.domains)
    if not email_domain_allowed(email, policy.domains):
        return "bad_domain"
    now = ctx.services.clock()
    auth["minutes"] = max(1, round(policy.code_ttl / 60))
    storage = ctx.services.storage
    pending = await ctx.sign_in.code()
    live = pending is not None and now < pending.expires_at and pending.attempts < policy.max_attempts
    auth["has_code"] = live
    # The cooldown is per peer and address, and only while that code can still be entered: a
    # mistyped address needs no wait, nor does a code that was used, locked or has expired.
    if live and pending is not None and pending.email == email and now - pending.created_at < policy.resend_cooldown:
        auth["wait_seconds"] = math.ceil(policy.resend_cooldown - (now - pending.created_at))
        return "cooldown"
    # Caps: one peer may ask for a few codes an hour; an address gets at most twice that from
    # everyone else, so nobody can flood a mailbox, and one stranger alone cannot lock its owner
    # out. Claimed before the letter leaves, atomically across users and workers.
    cap = policy.max_sends_per_hour
    if not await storage.reserve_send(ctx.peer, email, now, now - HOUR, peer_cap=cap, others_cap=2 * cap):
        stats = await storage.code_send_stats(ctx.peer, email, now - HOUR)
        frees = [t + HOUR for t, full in ((stats.first_peer_at, stats.by_peer >= cap),
                                          (stats.first_others_at, stats.by_email - stats.by_pair >= 2 * cap))
                 if full and t is not None]
        # When the oldest send counted leaves the hour, so that the answer can say when.
        auth["wait_minutes"] = max(1, math.ceil((max(frees, default=now + 60) - now) / 60))
        return "too_many"
    code, salt = new_code(), secrets.token_bytes(16)
    code_hash = await asyncio.to_thread(hash_code, code, salt)
    auth["email"] = email
    values = {"code": code, "minutes": auth["minutes"], "email": email}
    bot = ctx.flows.bot
    message = MailMessage(email, bot.mail_subject.render(values), bot.mail_body.render(values))
    try:
        await ctx.services.mailer.send(message)
    except MailRecipientRefused as exc:
        # Answered as a letter that went, and counted as one: otherwise whether a mailbox
        # exists would leak to whoever asks. The admin reads it in the log.
        # The server's words quote the address: the log's formatter hashes it (supportbot/logs.py).
        log.warning("sign-in mail refused by the mail server for its recipient: %s", exc)
    except MailError as exc:
        # No letter left: it costs the user nothing (the send is taken back, the earlier code stands).
        log.warning("sign-in mail could not be handed to the mail server: %s", exc)
        await storage.release_send(ctx.peer, email, now)
        return "mail_failed"
    ctx.sign_in.set_code(PendingCode(ctx.peer, email, code_hash, salt, now, now + policy.code_ttl))
    auth["has_code"] = True
    return "sent"


@action("auth.verify_code", emits={"verified", "wrong", "expired", "locked"}, writes={"auth": AUTH})
async def verify_code(ctx: ActionContext) -> str:
    """Check the code in slot `code` against the pending one, counting wrong tries.

    A wrong try counts when the step commits, which is before its reply is sent: every answer
    a user gets was counted, and a step redone after a crash tries the same code again."""
    policy = ctx.services.auth
    auth = ctx.record("auth")
    pending = await ctx.sign_in.code()
    now = ctx.services.clock()
    auth["has_code"] = False  # unless the try below was merely wrong
    if pending is None or now >= pending.expires_at:
        if pending is not None:
            ctx.sign_in.set_code(None)
        return "expired"
    if pending.attempts >= policy.max_attempts:
        ctx.sign_in.set_code(None)
        return "locked"
    entered = str(ctx.slots.pop("code", ""))
    candidate = await asyncio.to_thread(hash_code, entered, pending.salt)
    if hmac.compare_digest(candidate, pending.code_hash):
        ctx.sign_in.set_code(None)  # used: a code signs in once
        auth["verified"] = pending.email
        return "verified"
    attempts = pending.attempts + 1
    left = policy.max_attempts - attempts
    if left <= 0:
        ctx.sign_in.set_code(None)
        return "locked"
    ctx.sign_in.set_code(dataclasses.replace(pending, attempts=attempts))
    auth["attempts_left"] = left
    auth["has_code"] = True
    return "wrong"


@action("auth.bind", emits={"bound", "no_user", "unavailable", "expired"}, writes={"user": USER})
async def bind(ctx: ActionContext) -> str:
    """Bind the peer to the SimpleOne person with the verified email."""
    auth = ctx.record("auth")
    email = auth.get("verified")
    if not email:
        return "expired"
    try:
        person = await ctx.services.tickets.find_person(str(email), ctx.flows.tickets.people_tables)
    except TicketSystemError as exc:
        log.warning("person look-up failed: %s", exc)
        return "unavailable"
    if person is None:
        return "no_user"
    binding = Binding(ctx.peer, str(email), person.sys_id, person.name, ctx.services.clock())
    ctx.sign_in.bind(binding)
    ctx.slots["user"] = _user_slot(binding)
    auth.pop("verified", None)
    return "bound"


@action("auth.sign_out", emits={"signed_out", "not_signed_in"})
async def sign_out(ctx: ActionContext) -> str:
    """Unbind the peer from its email; the next ticket action asks to sign in again."""
    bound = await ctx.sign_in.binding() is not None
    if bound:
        ctx.sign_in.bind(None)
    if await ctx.sign_in.code() is not None:
        ctx.sign_in.set_code(None)
    ctx.slots["user"] = {}
    ctx.slots.pop("auth", None)
    return "signed_out" if bound else "not_signed_in"
