"""docs/capacity.md's settings table says what the stage's configuration and template say.

The table (between the `settings` markers) has one row per setting: `| setting | stage | value |`.
Setting names:
- `stage:<key>`: the key of the stage in cdk.json (`absent`: the stage has no such key);
- `esm:<queue purpose>:MaximumConcurrency` or `...:BatchSize`: the event source mapping that consumes
  the queue tagged with that purpose (`absent`: no mapping, or no maximum concurrency);
- `schedule:<name>`: the schedule's expression (the `seller-insights:schedule` tag names it);
- `function:<handler package>:Timeout|MemorySize|ReservedConcurrentExecutions`.
Every mapping and every schedule of the template must have rows, so a queue or schedule added later
fails here until the document says how it scales.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from local.scheduler import schedules
from local.template import PURPOSE_TAG, props, referenced_id, resources, tag

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CAPACITY = REPO / "docs" / "capacity.md"
BEGIN, END = "<!-- BEGIN settings -->", "<!-- END settings -->"
ABSENT = "absent"
# The scaling keys of issue 11: each needs a row, present on this branch or not yet.
SCALING_KEYS = ("refresh_concurrency", "lwa_refresh_rate", "lwa_refresh_burst", "report_jobs_concurrency",
                "plan_concurrency", "purge_concurrency")


def settings_table(text: str) -> list[tuple[str, str, str]]:
    section = text.split(BEGIN, 1)[1].split(END, 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("setting", "") or set(cells[0]) <= {"-"}:
            continue
        rows.append((cells[0], cells[1], cells[2]))
    return rows


def _mappings(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The SQS event source mappings, by the purpose of their queue."""
    found = {}
    for _, mapping in resources(raw, "AWS::Lambda::EventSourceMapping"):
        queue_id = referenced_id(props(mapping).get("EventSourceArn"))
        queue = raw["Resources"].get(queue_id or "", {})
        if queue.get("Type") == "AWS::SQS::Queue":
            found[tag(queue, PURPOSE_TAG) or str(queue_id)] = props(mapping)
    return found


def _functions(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(props(f)["Handler"]).split(".", 1)[0]: props(f) for _, f in resources(raw, "AWS::Lambda::Function")}


def actual(setting: str, stage_config: dict[str, Any], raw: dict[str, Any]) -> str:
    kind, _, rest = setting.partition(":")
    if kind == "stage":
        value = stage_config.get(rest, ABSENT)
        return value if isinstance(value, str) else json.dumps(value)
    if kind == "esm":
        queue, _, name = rest.rpartition(":")
        mapping = _mappings(raw).get(queue)
        if mapping is None:
            return ABSENT
        value = (mapping.get("ScalingConfig") or {}).get(name) if name == "MaximumConcurrency" else mapping.get(name)
        return ABSENT if value is None else str(value)
    if kind == "schedule":
        schedule = schedules(raw).get(rest)
        return ABSENT if schedule is None else schedule.expression
    if kind == "function":
        package, _, name = rest.rpartition(":")
        function = _functions(raw).get(package)
        value = None if function is None else function.get(name)
        return ABSENT if value is None else str(value)
    raise AssertionError(f"unknown setting kind in docs/capacity.md: {setting}")


@pytest.fixture(scope="module")
def table() -> list[tuple[str, str, str]]:
    return settings_table(CAPACITY.read_text())


@pytest.fixture(scope="module")
def stages() -> dict[str, dict[str, Any]]:
    stages: dict[str, dict[str, Any]] = json.loads((REPO / "cdk.json").read_text())["context"]["stages"]
    return stages


def test_every_row_matches_the_stage_and_its_template(
        table: list[tuple[str, str, str]], stages: dict[str, dict[str, Any]],
        templates: dict[str, dict[str, Any]]) -> None:
    assert table, "docs/capacity.md has no settings table"
    wrong = []
    for setting, stage, value in table:
        found = actual(setting, stages[stage], templates[stage])
        if found != value:
            wrong.append(f"{setting} ({stage}): the document says {value}, the stage has {found}")
    assert not wrong, "update docs/capacity.md's settings table:\n" + "\n".join(wrong)


def test_every_mapping_schedule_and_scaling_key_has_a_row(
        table: list[tuple[str, str, str]], templates: dict[str, dict[str, Any]]) -> None:
    for stage in {stage for _, stage, _ in table}:
        named = {setting for setting, row_stage, _ in table if row_stage == stage}
        raw = templates[stage]
        expected = {f"esm:{queue}:{name}" for queue in _mappings(raw) for name in ("MaximumConcurrency", "BatchSize")}
        expected |= {f"schedule:{name}" for name in schedules(raw)}
        expected |= {f"stage:{key}" for key in SCALING_KEYS}
        assert not expected - named, f"docs/capacity.md's settings table lacks rows for {sorted(expected - named)}"


def test_the_table_is_read_as_written() -> None:
    text = f"x\n{BEGIN}\n| setting | stage | value |\n|---|---|---|\n| `stage:a` | prod | 2 |\n{END}\n"
    assert settings_table(text) == [("stage:a", "prod", "2")]
    assert re.search(r"\d", settings_table(text)[0][2])
