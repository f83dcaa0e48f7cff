"""The topic catalogue matches the broker contract's tables, row for row."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboard.contract.topics import (
    CATALOGUE,
    Kind,
    Scope,
    TopicError,
    build_topic,
    entry_for,
    parse_topic,
    subscription_topics,
)

# The contract's two tables as it prints them (pattern, Pub, Sub).
CONTRACT_ROWS = """
devices/(:id)/meta                   Yes  Yes
devices/(:id)/meta/(:name)           No   Yes
devices/(:id)/actions                Yes  Yes
devices/(:id)/actions/(:type)        No   Yes
devices/(:id)/fault_alarms           Yes  Yes
areas/(:id)/meta/head_count          Yes  Yes
areas/(:id)/meta/headcount_in        Yes  Yes
areas/(:id)/meta/headcount_out       Yes  Yes
spaces/(:id)/actions                 Yes  Yes
spaces/(:id)/actions/(:type)         No   Yes
spaces/(:id)/meta/head_count         Yes  Yes
spaces/(:id)/meta/headcount_in       Yes  Yes
spaces/(:id)/meta/headcount_out      Yes  Yes
buildings/(:id)/actions              No   Yes
buildings/(:id)/actions/(:type)      No   Yes
buildings/(:id)/fault_alarms         Yes  Yes
buildings/(:id)/meta/head_count      Yes  Yes
buildings/(:id)/meta/headcount_in    Yes  Yes
buildings/(:id)/meta/headcount_out   Yes  Yes
devices/(:id)/meta/rejected            No   Yes
devices/(:id)/fault_alarms/rejected    No   Yes
buildings/(:id)/fault_alarms/rejected  No   Yes
"""
ROWS = [line.split() for line in CONTRACT_ROWS.strip().splitlines()]
ID = uuid.UUID("1de83fdc-6b4b-cff8-be07-cea1a7dd6343")


def test_catalogue_has_exactly_the_contract_rows_with_their_flags():
    assert [(e.pattern, e.pub, e.sub) for e in CATALOGUE] == [
        (pattern, pub == "Yes", sub == "Yes") for pattern, pub, sub in ROWS
    ]
    assert len(CATALOGUE) == 22


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda e: e.pattern)
def test_every_row_builds_and_parses_both_ways(entry):
    param = {"name": "temperature", "type": "dim", None: None}[entry.param]
    topic = build_topic(entry.scope, ID, entry.kind, param)
    assert topic == entry.pattern.replace("(:id)", str(ID)).replace(
        f"(:{entry.param})", param or ""
    )
    parsed = parse_topic(topic)
    assert (parsed.entry, parsed.id, parsed.param) == (entry, ID, param)
    assert str(parsed) == topic


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda e: e.pattern)
def test_publishing_is_allowed_exactly_where_the_contract_says_pub(entry):
    param = {"name": "temperature", "type": "dim", None: None}[entry.param]
    if entry.pub:
        assert build_topic(entry.scope, ID, entry.kind, param, publish=True)
    else:
        with pytest.raises(TopicError, match="not allowed"):
            build_topic(entry.scope, ID, entry.kind, param, publish=True)


def test_publishing_to_a_buildings_actions_is_impossible():
    with pytest.raises(TopicError, match=r"buildings/\(:id\)/actions is not allowed"):
        build_topic(Scope.BUILDING, ID, Kind.ACTION, publish=True)


@pytest.mark.parametrize(
    ("scope", "entity_id", "kind", "param", "problem"),
    [
        (Scope.DEVICE, "not-a-uuid", Kind.META, None, "not a UUID"),
        (Scope.DEVICE, "+", Kind.META, None, "not a UUID"),
        (Scope.DEVICE, ID, Kind.META_ITEM, "a/b", "not a valid topic segment"),
        (Scope.DEVICE, ID, Kind.META_ITEM, "+", "not a valid topic segment"),
        (Scope.DEVICE, ID, Kind.META_ITEM, "#", "not a valid topic segment"),
        (Scope.DEVICE, ID, Kind.META_ITEM, "temp\x00", "not a valid topic segment"),
        (Scope.DEVICE, ID, Kind.META_ITEM, "", "needs a name"),
        (Scope.DEVICE, ID, Kind.META_ITEM, "rejected", "names a different topic"),
        (Scope.DEVICE, ID, Kind.META, "temperature", "takes no"),
        (Scope.AREA, ID, Kind.ACTION, None, "no action topic for a area"),
        (Scope.SPACE, ID, Kind.FAULT_ALARM, None, "no fault_alarm topic"),
    ],
)
def test_topics_the_broker_would_drop_us_for_cannot_be_built(
    scope, entity_id, kind, param, problem
):
    with pytest.raises(TopicError, match=problem):
        build_topic(scope, entity_id, kind, param)


@pytest.mark.parametrize(
    "topic",
    [
        "devices/+/meta",
        "devices/#",
        f"devices/{ID}/#",
        f"devices/{ID}/meta/+/x",
        f"devices/{ID}/unknown",
        f"rooms/{ID}/meta",
        f"areas/{ID}/actions",
        f"devices/{str(ID).upper()}/meta",
        f"devices/{ID.hex}/meta",
        "",
        "/",
    ],
)
def test_parsing_refuses_anything_outside_the_catalogue(topic):
    with pytest.raises(TopicError):
        parse_topic(topic)


def test_rejected_topics_are_not_mistaken_for_meta_names():
    assert parse_topic(f"devices/{ID}/meta/rejected").kind == Kind.REJECTED_META
    assert parse_topic(f"devices/{ID}/meta/temperature").kind == Kind.META_ITEM
    assert parse_topic(f"areas/{ID}/meta/head_count").kind == Kind.HEAD_COUNT


@given(st.text(max_size=200))
def test_parsing_any_text_raises_only_topic_errors(text):
    with contextlib.suppress(TopicError):
        parse_topic(text)


def test_subscription_list_gets_each_piece_of_information_once_without_wildcards():
    building, space, area, device = (uuid.uuid4() for _ in range(4))
    topics = subscription_topics(building, [space], [area], [device])
    assert sorted(topics) == sorted(
        [
            f"buildings/{building}/actions",
            f"buildings/{building}/fault_alarms",
            f"buildings/{building}/fault_alarms/rejected",
            f"buildings/{building}/meta/head_count",
            f"buildings/{building}/meta/headcount_in",
            f"buildings/{building}/meta/headcount_out",
            f"spaces/{space}/actions",
            f"spaces/{space}/meta/head_count",
            f"spaces/{space}/meta/headcount_in",
            f"spaces/{space}/meta/headcount_out",
            f"areas/{area}/meta/head_count",
            f"areas/{area}/meta/headcount_in",
            f"areas/{area}/meta/headcount_out",
            f"devices/{device}/meta",
            f"devices/{device}/fault_alarms",
            f"devices/{device}/meta/rejected",
            f"devices/{device}/fault_alarms/rejected",
        ]
    )
    assert len(set(topics)) == len(topics)
    assert not any("+" in t or "#" in t for t in topics)
    for topic in topics:
        assert parse_topic(topic).entry.sub


def test_entry_for_names_what_is_missing():
    with pytest.raises(TopicError, match="no head_count topic for a device"):
        entry_for(Scope.DEVICE, Kind.HEAD_COUNT)
