"""Time from submit to ticket under a given fault rate: the outbox against a flaky SimpleOne.

Users sign in and go through the create-ticket dialogue; the clock starts when they press
«Отправить» and stops when they know their number — in the answer, when SimpleOne answered
within the wait, or in a notice later. SimpleOne is the emulator over HTTP on loopback with a
share of requests failing at random (HTTP 500; half of them after the write was done, the
case where a naive retry makes a duplicate). Prints, per fault rate: how many users had the
number in the answer, p50 / p90 / max time to the number, attempts and SimpleOne requests per
ticket, and duplicates and lost tickets (both must be 0). Numbers only; nothing is asserted.

Run: .venv/bin/python bench/outbox.py [--rates 0,0.1,0.3] [--users 100] [--wait 5] [--backoff 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.simpleone.client import SimpleOneClient, SimpleOneConfig
from adapters.spool import DiskSpool
from adapters.storage.sqlite import open_sqlite
from emulators.mail_sink import MemoryMailSink
from emulators.simpleone.server import start_emulator
from engine.actions.context import AuthPolicy, Services
from engine.dialogue.runtime import Engine
from engine.flows.model import FlowSet
from engine.flows.source import StaticFlows
from engine.load import load_flow_set
from engine.ports import Binding, Incoming
from engine.work.outbox import OutboxPolicy
from engine.work.ticket_outbox import ticket_outbox

FLOWS = Path(__file__).resolve().parent.parent / "flows"
BEFORE_SUBMIT = ["Начать", "Создать заявку", "2", "6", None, "Без файлов"]
NUMBER = re.compile(r"\b(INC\d{7})\b")
MARKER = re.compile(r"\[sb:[0-9a-f]+\]")


async def measure(flow_set: FlowSet, rate: float, users: int, wait: float, backoff: float,
                  tmp: Path) -> dict[str, float]:
    emulator = await start_emulator(auto_users_domains=("ranepa.ru",))
    client = SimpleOneClient(SimpleOneConfig(emulator.url, username="bot", password="bot-password",
                                             read_timeout=5.0))
    storage = await open_sqlite(tmp / f"outbox-{rate}.db")
    services = Services(storage, client, MemoryMailSink(), DiskSpool(tmp / "spool"), AuthPolicy(), idle_timeout=1e9)
    flows = StaticFlows(flow_set)
    policy = OutboxPolicy(wait=wait, backoff_base=backoff, backoff_cap=10 * backoff, sweep_every=0.2,
                          breaker_threshold=10_000)  # the breaker would measure itself, not the retries
    worker = ticket_outbox(services, flows, policy)
    working = asyncio.create_task(worker.run())
    engine = Engine(flows, services)
    peers = [f"bench:{n}" for n in range(users)]
    for n, peer in enumerate(peers):
        person = await client.find_person(f"user{n}@ranepa.ru")
        assert person is not None
        await storage.put_binding(Binding(peer, person.email, person.sys_id, person.name, time.time()))
        for text in BEFORE_SUBMIT:
            await engine.handle(peer, Incoming(text=text or f"Пользователь {n}: не открывается сетевая папка"))

    emulator.faults.set_error_rate(rate, seed=int(rate * 1000))
    requests_before = len(emulator.state.request_log)
    submitted: dict[str, float] = {}
    known: dict[str, float] = {}
    number_of: dict[str, str] = {}

    async def submit(peer: str) -> None:
        submitted[peer] = time.perf_counter()
        (reply,) = await engine.handle(peer, Incoming(text="Отправить"))
        found = NUMBER.search(reply.text)
        if found:
            known[peer], number_of[peer] = time.perf_counter(), found.group(1)

    started = time.perf_counter()
    await asyncio.gather(*(submit(peer) for peer in peers))
    in_answer = len(known)
    # The rest learn their number from notices, as the channel would send them.
    deadline = time.perf_counter() + 300
    while len(known) < users and time.perf_counter() < deadline:
        for notice in await storage.notices_unsent(1000):
            found = NUMBER.search(notice.text)
            if found and notice.peer not in known:
                known[notice.peer], number_of[notice.peer] = time.perf_counter(), found.group(1)
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    requests = len(emulator.state.request_log) - requests_before
    tickets = emulator.state.records("itsm_incident")
    markers = Counter(m.group(0) for t in tickets for m in [MARKER.search(t.get("description", ""))] if m)
    times = sorted(known[p] - submitted[p] for p in known)

    working.cancel()
    await asyncio.gather(working, return_exceptions=True)
    await storage.close()
    await client.close()
    await emulator.close()
    return {
        "rate": rate, "users": users, "in_answer": in_answer, "told": len(known),
        "p50": statistics.median(times) if times else float("nan"),
        "p90": times[int(len(times) * 0.9) - 1] if times else float("nan"),
        "max": times[-1] if times else float("nan"),
        "attempts": worker.tries / max(1, len(tickets)), "requests": requests / max(1, len(tickets)),
        "duplicates": sum(c - 1 for c in markers.values()), "lost": users - len(markers),
        "wrong": sum(1 for p, num in number_of.items() if num not in {t["number"] for t in tickets}),
        "elapsed": elapsed,
    }


async def main(rates: list[float], users: int, wait: float, backoff: float) -> None:
    flow_set = load_flow_set([FLOWS]).flow_set
    assert flow_set is not None
    print(f"outbox: {users} users submit at once; SimpleOne emulator over HTTP failing a share of requests "
          f"at random (half of them after the write); answer waits {wait:g} s; backoff from {backoff:g} s")
    print(f"{'fault rate':>10} {'in answer':>10} {'p50 s':>7} {'p90 s':>7} {'max s':>7} {'tries/ticket':>13} "
          f"{'requests/ticket':>16} {'duplicates':>11} {'lost':>5} {'wrong no.':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for rate in rates:
            r = await measure(flow_set, rate, users, wait, backoff, Path(tmp))
            print(f"{r['rate']:>10.0%} {r['in_answer']:>6.0f}/{users:<3} {r['p50']:>7.2f} {r['p90']:>7.2f} "
                  f"{r['max']:>7.2f} {r['attempts']:>13.2f} {r['requests']:>16.2f} {r['duplicates']:>11.0f} "
                  f"{r['lost']:>5.0f} {r['wrong']:>10.0f}")
    print("(in answer: users whose answer to «Отправить» had the number; the others got it in a notice. "
          "Times run from pressing «Отправить» to knowing the number.)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0,0.1,0.3", help="shares of SimpleOne requests that fail")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--wait", type=float, default=5.0, help="how long the answer waits for SimpleOne")
    parser.add_argument("--backoff", type=float, default=0.5, help="first retry delay in seconds (the bot's: 2)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # every retry is logged as a warning: too many to print
    asyncio.run(main([float(r) for r in args.rates.split(",")], args.users, args.wait, args.backoff))
