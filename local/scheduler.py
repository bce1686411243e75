"""The template's schedules. moto never fires them, so the local stack fires them on request
(`POST /_local/fire/{name}`), with the event EventBridge would send.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from local.template import (
    ACCOUNT_ID,
    PURPOSE_TAG,
    REGION,
    SCHEDULE_TAG,
    Template,
    TemplateError,
    invoked_function,
    props,
    referenced_id,
    resources,
    tag,
)

RULE_TYPE = "AWS::Events::Rule"
SCHEDULE_TYPE = "AWS::Scheduler::Schedule"


@dataclass(frozen=True)
class Target:
    logical_id: str  # a Lambda function or an SQS queue of the template
    input: str | None  # a constant JSON payload, if the target sets one


@dataclass(frozen=True)
class Schedule:
    name: str
    logical_id: str
    expression: str
    targets: tuple[Target, ...]

    def event(self, now: datetime, target: Target) -> Any:
        if target.input is not None:
            return json.loads(target.input)
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT_ID,
            "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{self.name}"],
            "detail": {},
        }


def schedules(template: Template) -> dict[str, Schedule]:
    """By name: the `seller-insights:schedule` tag, else the purpose tag, else a plain Name, else the logical id."""
    found: dict[str, Schedule] = {}
    for logical_id, resource in resources(template, RULE_TYPE, SCHEDULE_TYPE):
        p = props(resource)
        if not isinstance(p.get("ScheduleExpression"), str):
            continue  # an event-pattern rule, not a schedule
        plain_name = p.get("Name") if isinstance(p.get("Name"), str) else None
        name = tag(resource, SCHEDULE_TAG) or tag(resource, PURPOSE_TAG) or plain_name or logical_id
        raw_targets = (p.get("Targets") or []) if resource["Type"] == RULE_TYPE else [p.get("Target") or {}]
        targets = []
        for raw in raw_targets:
            # A function's alias (or version) stands for the function; a queue for itself.
            target_id = invoked_function(template, raw.get("Arn")) or referenced_id(raw.get("Arn"))
            if target_id is None:
                raise TemplateError(f"{logical_id}: a schedule target whose Arn is not a resource of the template")
            targets.append(Target(target_id, raw.get("Input") if isinstance(raw.get("Input"), str) else None))
        if name in found:
            raise TemplateError(f"two schedules are named {name!r}: {found[name].logical_id} and {logical_id}")
        found[name] = Schedule(name, logical_id, p["ScheduleExpression"], tuple(targets))
    return found
