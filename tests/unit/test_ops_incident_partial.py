"""`ops incident contain` against moto in-process, when EventBridge refuses part way: the failed attempt is
audited with what it did, and `restore` undoes exactly that."""

from __future__ import annotations

import argparse
import io
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from ops import incident
from ops.api import OpsError
from ops.fleet import Fleet, Resource
from tests.support.resources import create_resources

RULES = ("si-plan-reports", "si-refresh-tokens", "si-sweep-retention")


class RefusingEvents:
    """The moto EventBridge client, except that DisableRule of one rule is refused as IAM would."""

    def __init__(self, events: Any, refused: str) -> None:
        self._events, self._refused = events, refused

    def disable_rule(self, Name: str) -> Any:
        if Name == self._refused:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "denied"}}, "DisableRule")
        return self._events.disable_rule(Name=Name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._events, name)


@pytest.fixture
def fleet() -> Any:
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        created = create_resources(session, {"client_id": "c", "client_secret": "s", "application_id": "a"})
        events = session.client("events")
        inventory = [Resource("Connections", "AWS::DynamoDB::Table", created.tables["connections"], "connections"),
                     Resource("Audit", "AWS::DynamoDB::Table", created.tables["audit"], "audit")]
        for name in RULES:
            events.put_rule(Name=name, ScheduleExpression="rate(5 minutes)", State="ENABLED")
            inventory.append(Resource(name, "AWS::Events::Rule", name))
        yield Fleet("SellerInsights-test", "us-east-1", session, inventory)


def run(command: Any, fleet: Fleet) -> int:
    args = argparse.Namespace(reason="partial", settle=0)
    return int(command(fleet, args, io.StringIO(), io.StringIO()))


def states(fleet: Fleet) -> dict[str, str]:
    return {name: fleet.client("events").describe_rule(Name=name)["State"] for name in RULES}


def audit_records(fleet: Fleet) -> list[dict[str, Any]]:
    items = fleet.client("dynamodb").scan(TableName=fleet.table("audit"))["Items"]
    return sorted(items, key=lambda item: item["received_at"]["S"] + item["type"]["S"])


def test_a_refused_step_leaves_an_audit_record_and_restore_undoes_what_was_done(fleet: Fleet) -> None:
    fleet._clients["events"] = RefusingEvents(fleet.client("events"), refused=RULES[1])

    with pytest.raises(OpsError, match="EventBridge refused disable_rule"):
        run(incident.contain, fleet)

    assert states(fleet) == {RULES[0]: "DISABLED", RULES[1]: "ENABLED", RULES[2]: "ENABLED"}
    (failed,) = audit_records(fleet)
    assert (failed["type"]["S"], failed["outcome"]["S"]) == ("incident_contain", "failed")
    assert failed["detail"]["M"]["rules_disabled"]["N"] == "1"
    assert [rule["S"] for rule in failed["changes"]["M"]["rules_disabled"]["L"]] == [RULES[0]]
    assert incident.Incident(fleet).gate() is not None  # the switch holds: consent closed, refresh blocked

    assert run(incident.restore, fleet) == 0
    assert states(fleet) == dict.fromkeys(RULES, "ENABLED")
    assert incident.Incident(fleet).gate() is None
    assert [(r["type"]["S"], r["outcome"]["S"]) for r in audit_records(fleet)][-1] == ("incident_restore", "done")
