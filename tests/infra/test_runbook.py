"""docs/runbook.md has a section for every alarm of the prod template, and no section for an alarm that is gone
(issue 12, section 3). A section heading is the alarm's construct id in backticks, or a family pattern with
`*` (`*OldestMessageAge`); the alarm's name is `{stack name}-{construct id}` and its description ends with the
section it belongs to."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import Any

import pytest

from infra import REPO_ROOT
from infra.app import stack_id
from tests.infra.conftest import resources

pytestmark = pytest.mark.slow

RUNBOOK_NAME = "docs/runbook.md"
RUNBOOK = REPO_ROOT / RUNBOOK_NAME
HEADING = re.compile(r"^#{2,4} `([^`]+)`\s*$", re.MULTILINE)
ALARM_TYPES = ("AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm")
POINTER = re.compile(re.escape("Runbook: " + RUNBOOK_NAME + ", section `") + r"([^`]+)`\.$")


def sections(text: str) -> list[str]:
    return HEADING.findall(text)


def alarm_ids(prod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Construct id -> properties of every alarm (metric and composite) of the template, read from the
    explicit name `{stack name}-{construct id}`."""
    prefix = f"{stack_id('prod')}-"
    found: dict[str, dict[str, Any]] = {}
    for resource_type in ALARM_TYPES:
        for logical_id, alarm in resources(prod, resource_type).items():
            props = alarm["Properties"]
            name = props.get("AlarmName")
            assert isinstance(name, str) and name.startswith(prefix), f"{logical_id} has no explicit name: {name!r}"
            found[name.removeprefix(prefix)] = props
    return found


def missing_and_stale(ids: set[str], headings: list[str]) -> tuple[set[str], set[str]]:
    missing = {i for i in ids if not any(fnmatchcase(i, h) for h in headings)}
    stale = {h for h in headings if not any(fnmatchcase(i, h) for i in ids)}
    return missing, stale


@pytest.fixture(scope="module")
def prod(templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return templates["prod"]


def test_every_alarm_has_a_runbook_section_and_every_section_an_alarm(prod: dict[str, Any]) -> None:
    headings = sections(RUNBOOK.read_text())
    assert len(headings) == len(set(headings)), "a section heading appears twice"
    missing, stale = missing_and_stale(set(alarm_ids(prod)), headings)
    assert not missing, f"alarms without a section in docs/runbook.md: {sorted(missing)}"
    assert not stale, f"sections of docs/runbook.md that name no alarm of the template: {sorted(stale)}"


def test_each_description_points_at_the_section_that_covers_its_alarm(prod: dict[str, Any]) -> None:
    headings = set(sections(RUNBOOK.read_text()))
    for construct_id, props in alarm_ids(prod).items():
        pointer = POINTER.search(props["AlarmDescription"])
        assert pointer, f"{construct_id}: the description does not end with its runbook section"
        section = pointer.group(1)
        assert section in headings, f"{construct_id} points at `{section}`, not a heading of docs/runbook.md"
        assert fnmatchcase(construct_id, section), f"{construct_id} points at `{section}`, which is not its own"


def test_the_check_finds_a_missing_section_and_a_stale_one() -> None:
    text = "# Runbook\n\n### `PurgeFailed`\nwhat to do\n\n## `*Heartbeat`\n\n### `GoneAlarm`\n\n### not an alarm\n"
    assert sections(text) == ["PurgeFailed", "*Heartbeat", "GoneAlarm"]
    missing, stale = missing_and_stale({"PurgeFailed", "PlanReportsHeartbeat", "NewAlarm"}, sections(text))
    assert (missing, stale) == ({"NewAlarm"}, {"GoneAlarm"})
