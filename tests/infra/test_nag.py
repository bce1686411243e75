"""The cdk-nag gate: the real stacks pass it, and it does stop a non-compliant app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs

from infra.nag import acknowledge, add_nag_checks

NAG_PACKS = {"AwsSolutions", "Serverless"}


@pytest.mark.slow
def test_stacks_synthesize_with_no_unacknowledged_findings(
    apps: dict[str, cdk.App], templates: dict[str, dict[str, Any]]
) -> None:
    # The session fixture synthesized dev and prod; app.synth() raises on an unacknowledged finding of a
    # validation plugin, so this holds only if the apps it synthesized carry both nag packs.
    assert set(templates) == {"dev", "prod"}
    for stage, app in apps.items():
        assert {plugin.name for plugin in app.policy_validation_beta1} == NAG_PACKS, stage
        assert templates[stage]["Resources"], stage


def _bad_app(outdir: Path) -> tuple[cdk.App, sqs.Queue]:
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "Throwaway")
    queue = sqs.Queue(stack, "Plain", encryption=sqs.QueueEncryption.UNENCRYPTED)
    add_nag_checks(app)
    return app, queue


@pytest.mark.slow
def test_gate_fails_synthesis_of_a_non_compliant_app(tmp_path: Path) -> None:
    app, _ = _bad_app(tmp_path)
    with pytest.raises(RuntimeError, match="ValidationFailed") as failure:
        app.synth()
    assert "AwsSolutions-SQS2" in str(failure.value)
    report = json.loads((tmp_path / "validation-report.json").read_text())
    assert report["pluginReports"], "the failed validation wrote no report"


@pytest.mark.slow
def test_acknowledged_findings_no_longer_fail(tmp_path: Path) -> None:
    app, queue = _bad_app(tmp_path)
    reason = "Throwaway queue in a test that proves acknowledgements are honoured."
    for rule in ("AwsSolutions-SQS2", "AwsSolutions-SQS3", "AwsSolutions-SQS4", "Serverless-SQSRedrivePolicy"):
        acknowledge(queue, rule, reason)
    app.synth()


@pytest.mark.parametrize("reason", ["", "   ", "because", "short reason here"])
def test_acknowledge_refuses_empty_or_short_reasons(reason: str) -> None:
    construct = cdk.Stack(cdk.App(), "Any")
    with pytest.raises(ValueError, match="reason"):
        acknowledge(construct, "AwsSolutions-S1", reason)


def test_acknowledge_refuses_an_empty_rule_id() -> None:
    with pytest.raises(ValueError, match="rule id"):
        acknowledge(cdk.Stack(cdk.App(), "Any"), " ", "a perfectly long and specific reason")
