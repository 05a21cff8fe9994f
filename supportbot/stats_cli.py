"""`supportbot stats`: figures for the support lead, from the counters the bot keeps per day.

Nothing here reads logs or SimpleOne: every figure is a sum of counters (engine/ports/counters.py)
written with the step or outbox outcome that counted them — the flows' own (`count:` on a
transition) and the engine's (engine/figures.py). The figures and the counters behind them:

- tickets created, per day and by catalogue group (`ticket_created:<group>`), and failed
  (`outbox_failed:ticket.create`); tickets sent with «Отправить» (`ticket_sent` and
  `ticket_sent_free_text`);
- sign-in success rate: `sign_in_done` of `sign_in_asked`, with how the others went;
- median time from «Отправить» to the ticket's number: the `ticket_wait:<bound>` histogram;
- tickets saved by hints (`hint_helped`); ratings (`rating_1` … `rating_5`);
- free-text messages in the main menu that led to a ticket (`ticket_sent_free_text` of `free_text`);
- where people give up the create dialogue (`left:create_ticket:<step>`), against the
  dialogues that ended (left, sent, or solved by a hint); and, as a snapshot of the sessions
  table, how many wait at each of its steps idle longer than SESSION_IDLE_MINUTES now (people
  who stopped answering, not counted until they write again);
- every counter's total, so a counter a lead adds to the flows shows up at once.

Days are UTC days, today included.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from engine import figures
from engine.ports import DayCount
from supportbot.app import open_storage
from supportbot.config import Config

FORMATS = ("table", "csv", "json")
CREATE_FLOW = "create_ticket"
CREATE_KIND = "ticket.create"
MAX_DAYS = 36500
_SINCE = re.compile(r"(\d{1,5})([dw])")


class BadSince(ValueError):
    """A --since value that names no period; the message says what would."""


def parse_since(text: str, today: date) -> date:
    """The first day of the period: `7d` (7 days, today included), `4w` (weeks), or a date
    `2026-11-01`."""
    value = text.strip().lower()
    found = _SINCE.fullmatch(value)
    if found:
        days = int(found.group(1)) * (7 if found.group(2) == "w" else 1)
        if not 1 <= days <= MAX_DAYS:
            raise BadSince(f"--since {text!r}: give from 1d to {MAX_DAYS}d")
        return today - timedelta(days=days - 1)
    try:
        first = date.fromisoformat(value)
    except ValueError:
        raise BadSince(f"--since {text!r} is not a period: give days such as 7d, weeks such as 4w, "
                       "or a first day such as 2026-11-01") from None
    if first > today:
        raise BadSince(f"--since {text!r} is after today ({today.isoformat()}, UTC)")
    return first


@dataclass(frozen=True, slots=True)
class Names:
    """What the flows call things: group names by id, and the create dialogue's steps in order
    (empty when the flows cannot be read: ids are shown instead)."""

    groups: Mapping[str, str]
    steps: Sequence[str]
    ended: frozenset[str] = frozenset()  # its `free_text` steps: the dialogue ended there


def flow_names(flows_dir: Path) -> Names:
    from engine.load import load_flow_set  # only here: the flows are read for their names alone

    flow_set = load_flow_set([flows_dir]).flow_set
    if flow_set is None:
        return Names({}, ())
    create = flow_set.flows.get(CREATE_FLOW)
    steps = create.states if create else {}
    return Names({g.id: g.name for g in flow_set.catalog.groups}, tuple(steps),
                 frozenset(name for name, st in steps.items() if st.free_text))


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def compute(counts: Iterable[DayCount], first: date, last: date, names: Names,
            idle: Mapping[str, int] | None = None, idle_minutes: float = 0.0) -> dict[str, Any]:
    """Every figure for the days first..last, as plain data (the json output as it is); idle:
    sessions idle now by state (Counters.idle_states), idle_minutes how long that is."""
    days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    per_day: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    total: dict[str, int] = defaultdict(int)
    for c in counts:
        if first.isoformat() <= c.day <= last.isoformat():
            per_day[c.day][c.name] += c.count
            total[c.name] += c.count

    def labels(name: str, where: Mapping[str, int]) -> dict[str, int]:
        prefix = f"{name}:"
        return {k[len(prefix):]: n for k, n in where.items() if k.startswith(prefix)}

    def sent(where: Mapping[str, int]) -> int:
        return where.get("ticket_sent", 0) + where.get("ticket_sent_free_text", 0)

    failed_name = figures.labelled(figures.OUTBOX_FAILED, CREATE_KIND)
    daily = [{"day": day,
              "created": sum(labels(figures.TICKET_CREATED, per_day[day]).values()),
              "failed": per_day[day].get(failed_name, 0),
              "sent": sent(per_day[day]),
              "hints_helped": per_day[day].get("hint_helped", 0),
              "free_text": per_day[day].get("free_text", 0),
              "signed_in": per_day[day].get("sign_in_done", 0)} for day in days]
    by_group = sorted(labels(figures.TICKET_CREATED, total).items(), key=lambda kv: (-kv[1], kv[0]))
    created = sum(n for _, n in by_group)

    asked, done = total.get("sign_in_asked", 0), total.get("sign_in_done", 0)
    waits = labels(figures.TICKET_WAIT, total)
    median = figures.median_bound(waits)
    ratings = {str(n): total.get(f"rating_{n}", 0) for n in range(1, 6)}
    rated = sum(ratings.values())
    free_text, free_text_sent = total.get("free_text", 0), total.get("ticket_sent_free_text", 0)

    left = labels(f"{figures.LEFT}:{CREATE_FLOW}", total)
    order = {step: n for n, step in enumerate(names.steps)}
    hints, sent_total = total.get("hint_helped", 0), sent(total)
    ended = sum(left.values()) + sent_total + hints
    waiting = {state: n for state, n in (idle or {}).items()
               if (state in order if order else state.startswith(f"{CREATE_FLOW}.")) and state not in names.ended}
    return {
        "first_day": days[0], "last_day": days[-1], "days": len(days),
        "tickets": {
            "created": created, "failed": total.get(failed_name, 0), "sent": sent_total,
            "by_group": [{"group": g, "name": names.groups.get(g, g or "(unknown)"), "created": n,
                          "share": _ratio(n, created)} for g, n in by_group],
            "per_day": daily,
        },
        "sign_in": {
            "asked": asked, "done": done, "success_rate": _ratio(done, asked),
            "codes_sent": total.get("sign_in_code_sent", 0), "wrong_code": total.get("sign_in_wrong_code", 0),
            "code_expired": total.get("sign_in_code_expired", 0), "locked": total.get("sign_in_locked", 0),
            "not_corporate": total.get("sign_in_bad_domain", 0), "no_user": total.get("sign_in_no_user", 0),
        },
        "wait_for_number": {
            "tickets": sum(waits.values()),
            # The middle ticket got its number within this many seconds (a bucket's bound).
            "median_at_most_seconds": None if median is None else (None if median == float("inf") else int(median)),
            "median_over_seconds": figures.WAIT_BUCKETS[-1] if median == float("inf") else None,
            "buckets": {bound: waits.get(bound, 0)
                        for bound in (*(str(b) for b in figures.WAIT_BUCKETS), figures.ABOVE)},
        },
        "hints_helped": hints,
        "ratings": {"count": rated, "average": round(sum(int(k) * n for k, n in ratings.items()) / rated, 2)
                    if rated else None, "by_value": ratings},
        "free_text": {"messages": free_text, "tickets_sent": free_text_sent,
                      "share": _ratio(free_text_sent, free_text)},
        "create_dropoff": {
            "ended": ended, "sent": sent_total, "solved_by_hint": hints,
            "left": [{"step": step, "count": n, "share": _ratio(n, ended)}
                     for step, n in sorted(left.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))],
            # Not of the period: sessions waiting at the step now, idle longer than idle_minutes.
            "idle_minutes": round(idle_minutes),
            "idle_now": [{"step": step, "count": n}
                         for step, n in sorted(waiting.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))],
        },
        "counters": dict(sorted(total.items())),
    }


# --------------------------------------------------------------------------- output


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:g} s"
    if value < 7200:
        return f"{value / 60:g} min"
    return f"{value / 3600:g} h"


def _table(head: Sequence[str], rows: Sequence[Sequence[object]], *, numbers: bool = True) -> list[str]:
    """Columns padded to their widest cell: the first left-aligned, the others (numbers)
    right-aligned, or left-aligned too where they are words (numbers=False)."""
    cells = [[str(c) for c in head], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    return ["  ".join(c.rjust(w) if i and numbers else c.ljust(w)
                      for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip() for row in cells]


def render_table(f: Mapping[str, Any]) -> str:
    t, s, w, r, ft, d = (f["tickets"], f["sign_in"], f["wait_for_number"], f["ratings"], f["free_text"],
                         f["create_dropoff"])
    out = [f"supportbot stats: {f['first_day']} … {f['last_day']} ({f['days']} day(s), UTC)", ""]
    out += ["Per day"]
    rows = [[x["day"], x["created"], x["failed"], x["sent"], x["hints_helped"], x["free_text"], x["signed_in"]]
            for x in t["per_day"]]
    rows.append(["total", t["created"], t["failed"], t["sent"], f["hints_helped"], ft["messages"], s["done"]])
    out += _table(["day", "created", "failed", "sent", "hints helped", "free text", "signed in"], rows)
    out += ["", "Tickets created by group"]
    out += _table(["group", "created", "share"],
                  [[g["name"], g["created"], _percent(g["share"])] for g in t["by_group"]] or [["(none)", 0, "—"]])
    if w["median_at_most_seconds"] is not None:
        median = f"at most {_seconds(w['median_at_most_seconds'])}"
    elif w["median_over_seconds"] is not None:
        median = f"over {_seconds(w['median_over_seconds'])}"
    else:
        median = "—"
    ratings = ", ".join(f"{k}: {n}" for k, n in r["by_value"].items())
    out += ["", "Figures"]
    out += _table(["figure", "value"], [
        ["sign-in success rate", f"{_percent(s['success_rate'])} ({s['done']} of {s['asked']})"],
        ["  codes sent / wrong code / expired / locked", f"{s['codes_sent']} / {s['wrong_code']} / "
                                                         f"{s['code_expired']} / {s['locked']}"],
        ["  not a corporate address / no SimpleOne user", f"{s['not_corporate']} / {s['no_user']}"],
        ["median «Отправить» → number", f"{median} ({w['tickets']} ticket(s))"],
        ["tickets saved by hints", f["hints_helped"]],
        ["ratings", f"{r['count']}, average {r['average'] if r['average'] is not None else '—'} ({ratings})"],
        ["free text that led to a ticket", f"{_percent(ft['share'])} ({ft['tickets_sent']} of {ft['messages']})"],
    ], numbers=False)
    out += ["", f"Create dialogue: where people gave up ({d['ended']} ended: {d['sent']} sent, "
                f"{d['solved_by_hint']} solved by a hint)"]
    left = {x["step"]: x for x in d["left"]}
    idle = {x["step"]: x["count"] for x in d["idle_now"]}
    steps = [*left, *(step for step in idle if step not in left)]
    out += _table(["step", "left", "of ended", f"idle now (> {d['idle_minutes']} min)"],
                  [[step, left[step]["count"] if step in left else 0,
                    _percent(left[step]["share"]) if step in left else "—", idle.get(step, 0)] for step in steps]
                  or [["(none)", 0, "—", 0]])
    out += ["", "Counters (totals)"]
    out += _table(["counter", "count"], list(f["counters"].items()) or [["(none)", 0]])
    return "\n".join(out) + "\n"


def csv_rows(f: Mapping[str, Any]) -> list[list[object]]:
    """section, key, day, value: one figure a row, for spreadsheets and scripts."""
    rows: list[list[object]] = [["section", "key", "day", "value"]]
    for x in f["tickets"]["per_day"]:
        rows += [["day", key, x["day"], value] for key, value in x.items() if key != "day"]
    rows += [["group", g["name"], "", g["created"]] for g in f["tickets"]["by_group"]]
    s, w, ft = f["sign_in"], f["wait_for_number"], f["free_text"]
    period = {
        "tickets_created": f["tickets"]["created"], "tickets_failed": f["tickets"]["failed"],
        "tickets_sent": f["tickets"]["sent"], **{f"sign_in_{k}": v for k, v in s.items()},
        "median_wait_at_most_seconds": w["median_at_most_seconds"],
        "median_wait_over_seconds": w["median_over_seconds"],
        "waited_tickets": w["tickets"], "hints_helped": f["hints_helped"],
        "ratings": f["ratings"]["count"], "rating_average": f["ratings"]["average"],
        "free_text_messages": ft["messages"], "free_text_tickets_sent": ft["tickets_sent"],
        "free_text_share": ft["share"], "create_ended": f["create_dropoff"]["ended"],
    }
    rows += [["figure", k, "", "" if v is None else v] for k, v in period.items()]
    rows += [["wait_bucket", k, "", n] for k, n in w["buckets"].items()]
    rows += [["rating", k, "", n] for k, n in f["ratings"]["by_value"].items()]
    rows += [["left", x["step"], "", x["count"]] for x in f["create_dropoff"]["left"]]
    rows += [["idle_now", x["step"], "", x["count"]] for x in f["create_dropoff"]["idle_now"]]
    rows += [["counter", k, "", n] for k, n in f["counters"].items()]
    return rows


def render(f: Mapping[str, Any], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        out.write(json.dumps(f, ensure_ascii=False, indent=2) + "\n")
    elif fmt == "csv":
        csv.writer(out, lineterminator="\n").writerows(csv_rows(f))
    else:
        out.write(render_table(f))


async def stats_command(config: Config, since: str, fmt: str, out: TextIO, now: float | None = None,
                        names: Names | None = None) -> int:
    """since: as --since takes it (BadSince if it names no period)."""
    moment = time.time() if now is None else now
    today = datetime.fromtimestamp(moment, UTC).date()
    first = parse_since(since, today)
    storage = await open_storage(config.database_url, synchronous=config.sqlite_synchronous)
    try:
        counts = await storage.counts(first.isoformat())
        idle = await storage.idle_states(moment - config.session_idle)
    finally:
        await storage.close()
    names = names if names is not None else flow_names(config.flows_dir)
    render(compute(counts, first, today, names, idle, config.session_idle / 60), fmt, out)
    return 0
