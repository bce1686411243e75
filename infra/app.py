"""Builds the CDK App the same way for the CLI (app.py), the tests and the local stack."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk

from infra import REPO_ROOT
from infra.config import DEFAULT_STAGE, ConfigError, StageConfig
from infra.nag import add_nag_checks
from infra.stack import SellerInsightsStack

CDK_JSON = REPO_ROOT / "cdk.json"


def stack_id(stage: str) -> str:
    return f"SellerInsights-{stage}"


def load_cdk_context() -> dict[str, Any]:
    """The ``context`` of cdk.json: stages and the feature flags the CLI would apply."""
    try:
        context = json.loads(CDK_JSON.read_text())["context"]
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(f"cannot read the context of {CDK_JSON}: {error}") from error
    if not isinstance(context, dict):
        raise ConfigError(f"{CDK_JSON}: 'context' must be an object")
    return context


def build_app(stage: str | None = None, outdir: str | None = None) -> cdk.App:
    """An App with cdk.json's context, the nag gate and the stack ``SellerInsights-{stage}``.

    ``stage`` defaults to the ``stage`` context value (``cdk synth -c stage=NAME``), then ``dev``.
    Makes no AWS calls: the stack is environment-agnostic.
    """
    # Context passed by the CLI (CDK_CONTEXT_JSON, e.g. -c stage=prod) still wins over cdk.json.
    app = cdk.App(context=load_cdk_context(), outdir=outdir)
    name = stage or app.node.try_get_context("stage") or DEFAULT_STAGE
    config = StageConfig.from_context(str(name), app.node.try_get_context("stages"))
    SellerInsightsStack(app, stack_id(config.name), config=config)
    add_nag_checks(app)
    return app


def function_environments(template: Mapping[str, Any]) -> dict[str, dict[str, object]]:
    """Each Lambda function's handler string mapped to its raw ``Environment.Variables``."""
    environments: dict[str, dict[str, object]] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        properties = resource.get("Properties", {})
        handler = properties.get("Handler")
        if handler in environments:
            raise ValueError(f"two functions share the handler {handler!r} ({logical_id})")
        environments[handler] = dict(properties.get("Environment", {}).get("Variables", {}))
    return environments
