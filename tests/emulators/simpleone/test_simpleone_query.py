"""The encoded-query parser and evaluator the emulator filters and sorts with."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulators.simpleone.query import OPERATORS, Condition, Order, Query, QueryError, parse_query

Record = Mapping[str, object]


def matches(query: str, record: Record) -> bool:
    return parse_query(query).matches(record.get)


def select(query: str, records: list[Record]) -> list[Record]:
    return parse_query(query).apply(records, lambda r: r.get)


# --------------------------------------------------------------------------- parsing


def test_parses_conditions_or_groups_and_order() -> None:
    q = parse_query("caller=155^active=1^stateIN2@3^ORstate=-2^ORDERBYDESCsys_created_at^ORDERBYnumber")
    assert q.groups == (
        (Condition("caller", "=", "155"),),
        (Condition("active", "=", "1"),),
        (Condition("state", "IN", "2@3"), Condition("state", "=", "-2")),
    )
    assert q.order == (Order("sys_created_at", True), Order("number", False))


@pytest.mark.parametrize("op", OPERATORS)
def test_every_operator_parses(op: str) -> None:
    value = "" if op in {"ISEMPTY", "ISNOTEMPTY"} else "x"
    assert parse_query(f"caller.email{op}{value}").groups == ((Condition("caller.email", op, value),),)


def test_values_keep_spaces_and_symbols() -> None:
    (cond,) = parse_query("subjectLIKEno wifi, room 3=4 > 5").conditions()
    assert cond == Condition("subject", "LIKE", "no wifi, room 3=4 > 5")
    assert parse_query("email=a.b@ranepa.ru").conditions() == [Condition("email", "=", "a.b@ranepa.ru")]


def test_blank_query_matches_everything() -> None:
    assert parse_query("") == Query()
    assert parse_query("   ").matches(lambda _field: None)


def test_trailing_eq_is_accepted() -> None:
    assert parse_query("active=1^EQ") == parse_query("active=1")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("^", "empty segment"),
        ("active=1^", "empty segment"),
        ("a=1^^b=2", "empty segment"),
        ("ORactive=1", "^OR with no condition"),
        ("^ORactive=1", "empty segment"),
        ("Active=1", "does not start with a field"),
        ("active", "no known operator"),
        ("active~1", "no known operator"),
        ("emailISEMPTYyes", "takes no value"),
        ("ORDERBY", "bad field name"),
        ("ORDERBYDESCBad", "bad field name"),
        ("EQ^active=1", "EQ may only end"),
        ("caller..email=1", "no known operator"),
    ],
)
def test_bad_queries_raise_query_error_naming_the_problem(text: str, why: str) -> None:
    with pytest.raises(QueryError, match=why.replace("^", r"\^")):
        parse_query(text)


def test_query_error_is_a_value_error() -> None:
    assert issubclass(QueryError, ValueError)


@settings(max_examples=400)
@given(st.text(alphabet=st.sampled_from("abc_.=!<>^@ORDERBYDESCINLIKENOTSTARTSWITHEQ 019-"), max_size=40))
def test_parser_raises_only_query_error_on_query_like_noise(text: str) -> None:
    try:
        parse_query(text)
    except QueryError:
        pass


@given(st.text(max_size=60))
def test_parser_raises_only_query_error_on_any_text(text: str) -> None:
    try:
        parse_query(text)
    except QueryError:
        pass


# --------------------------------------------------------------------------- evaluating


def test_and_binds_looser_than_or() -> None:
    # a ^ b ^OR c  ==  a AND (b OR c)
    query = "x=1^y=1^ORz=1"
    assert matches(query, {"x": "1", "y": "0", "z": "1"})
    assert not matches(query, {"x": "0", "y": "1", "z": "1"})
    assert not matches(query, {"x": "1", "y": "0", "z": "0"})


def test_in_and_not_in_split_on_at_sign() -> None:
    assert matches("stateIN2@3@7", {"state": "3"})
    assert not matches("stateIN2@3@7", {"state": "-2"})
    assert matches("stateNOT IN2@3", {"state": "-2"})
    assert not matches("stateNOT IN2@3", {"state": "2"})


def test_text_operators_ignore_case() -> None:
    record = {"subject": "Printer on floor 3 is JAMMED"}
    assert matches("subjectLIKEjammed", record)
    assert matches("subjectNOT LIKEscanner", record)
    assert matches("subjectSTARTSWITHprinter", record)
    assert matches("subjectENDSWITHjammed", record)


def test_equality_ignores_case_as_documented() -> None:
    # [doc] condition operators: `=` is case-insensitive (an email typed in any case is found).
    record = {"email": "Ivanov-II@RANEPA.ru"}
    assert matches("email=ivanov-ii@ranepa.ru", record)
    assert matches("email=IVANOV-II@ranepa.RU", record)
    assert not matches("email!=ivanov-ii@ranepa.ru", record)
    assert matches("email!=petrov@ranepa.ru", record)
    assert not matches("email=ivanov-i@ranepa.ru", record)


def test_empty_checks_treat_missing_and_none_as_empty() -> None:
    assert matches("serviceISEMPTY", {})
    assert matches("serviceISEMPTY", {"service": None})
    assert matches("serviceISEMPTY", {"service": ""})
    assert matches("serviceISNOTEMPTY", {"service": "42"})
    assert matches("service=", {"service": ""})


def test_numbers_compare_as_numbers_and_text_as_text() -> None:
    assert matches("state>10", {"state": "-2"}) is False
    assert matches("state<10", {"state": "7"})  # as text "7" > "10"
    assert matches("state>=-2", {"state": "-2"})
    assert matches("number>INC0000009", {"number": "INC0000010"})


def test_booleans_and_reference_objects_compare_as_their_text() -> None:
    assert matches("active=1", {"active": True})
    assert matches("active=0", {"active": False})
    assert matches("caller=155", {"caller": {"value": "155", "link": "http://x/155"}})


def test_timestamps_compare_chronologically() -> None:
    assert matches("sys_updated_at>2025-01-15 09:00:00", {"sys_updated_at": "2025-01-15 10:00:00"})
    assert not matches("sys_updated_at>2025-01-15 09:00:00", {"sys_updated_at": "2025-01-15 09:00:00"})
    assert matches("sys_updated_at<=2025-01-15 09:00:00", {"sys_updated_at": "2024-12-31 23:59:59"})


def test_order_by_sorts_stably_with_secondary_keys() -> None:
    records: list[Record] = [
        {"n": "a", "prio": "2", "at": "2025-01-02 00:00:00"},
        {"n": "b", "prio": "10", "at": "2025-01-01 00:00:00"},
        {"n": "c", "prio": "2", "at": "2025-01-03 00:00:00"},
        {"n": "d", "prio": "", "at": "2025-01-04 00:00:00"},
    ]
    by_prio_then_newest = select("ORDERBYprio^ORDERBYDESCat", records)
    assert [r["n"] for r in by_prio_then_newest] == ["d", "c", "a", "b"]  # empty first; 2 < 10
    assert [r["n"] for r in select("ORDERBYDESCprio", records)] == ["b", "a", "c", "d"]
    assert [r["n"] for r in select("prio=2", records)] == ["a", "c"]  # no ORDERBY: input order


# --------------------------------------------------------------------------- properties

FIELDS = ("state", "active", "subject")
VALUES = st.sampled_from(["", "-2", "0", "1", "2", "10", "abc", "ABC", "a b", "x@y.ru"])
records_st = st.lists(st.fixed_dictionaries({f: VALUES for f in FIELDS}), max_size=8)
plain_value = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="^@"), max_size=6)


@st.composite
def conditions(draw: st.DrawFn) -> Condition:
    op = draw(st.sampled_from(OPERATORS))
    if op in {"ISEMPTY", "ISNOTEMPTY"}:
        value = ""
    elif op in {"IN", "NOT IN"}:
        value = "@".join(draw(st.lists(VALUES, min_size=1, max_size=3)))
    else:
        value = draw(st.one_of(VALUES, plain_value))
        if op in {">", "<"} and value.startswith("="):
            value = value[1:]  # "state>" + "=5" is "state>=5": the grammar cannot tell them apart
    return Condition(draw(st.sampled_from(FIELDS)), op, value)


queries = st.builds(
    Query,
    st.lists(st.lists(conditions(), min_size=1, max_size=3).map(tuple), max_size=3).map(tuple),
    st.lists(st.builds(Order, st.sampled_from(FIELDS), st.booleans()), max_size=2).map(tuple),
)

COMPLEMENTS = {
    "=": "!=",
    "IN": "NOT IN",
    "LIKE": "NOT LIKE",
    "ISEMPTY": "ISNOTEMPTY",
    ">": "<=",
    "<": ">=",
}


@given(queries)
def test_render_then_parse_round_trips(query: Query) -> None:
    assert parse_query(query.render()) == query


@given(conditions(), st.fixed_dictionaries({f: VALUES for f in FIELDS}))
def test_each_operator_and_its_complement_split_every_record(cond: Condition, record: Record) -> None:
    pairs = {**COMPLEMENTS, **{v: k for k, v in COMPLEMENTS.items()}}
    if cond.op not in pairs:
        return
    opposite = Condition(cond.field, pairs[cond.op], cond.value)
    assert cond.matches(record.get) != opposite.matches(record.get)


@given(st.lists(conditions(), min_size=1, max_size=4), records_st)
def test_or_is_union_and_and_is_intersection(conds: list[Condition], records: list[Record]) -> None:
    any_of = Query((tuple(conds),))
    all_of = Query(tuple((c,) for c in conds))
    for record in records:
        hits = [c.matches(record.get) for c in conds]
        assert any_of.matches(record.get) == any(hits)
        assert all_of.matches(record.get) == all(hits)


@given(queries, records_st)
def test_apply_returns_exactly_the_matches_in_sorted_order(query: Query, records: list[Record]) -> None:
    result = query.apply(records, lambda r: r.get)
    expected = [r for r in records if query.matches(r.get)]
    assert sorted(map(id, result)) == sorted(map(id, expected))
    if query.order:
        first = query.order[0]
        ints = [int(v) if (v := str(r[first.field])).lstrip("-").isdigit() else None for r in result]
        numbers = [n for n in ints if n is not None]
        assert numbers == sorted(numbers, reverse=first.descending)


@given(st.integers(-(10**6), 10**6), st.integers(-(10**6), 10**6))
def test_integer_comparisons_agree_with_python(a: int, b: int) -> None:
    record = {"n": str(a)}
    assert matches(f"n>{b}", record) == (a > b)
    assert matches(f"n>={b}", record) == (a >= b)
    assert matches(f"n<{b}", record) == (a < b)
    assert matches(f"n<={b}", record) == (a <= b)


@given(st.datetimes(datetime(2000, 1, 1), datetime(2099, 1, 1)), st.integers(-(10**8), 10**8))
def test_timestamp_comparisons_agree_with_datetime(at: datetime, delta: int) -> None:
    fmt = "%Y-%m-%d %H:%M:%S"
    at = at.replace(microsecond=0)
    other = at + timedelta(seconds=delta)
    assert matches(f"t>{other.strftime(fmt)}", {"t": at.strftime(fmt)}) == (at > other)
