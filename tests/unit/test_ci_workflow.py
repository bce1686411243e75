"""The CI deploy workflow (.github/workflows/deploy.yml): valid for GitHub (its JSON schema, vendored in
check-jsonschema, no network) and deploying with OIDC role assumption only, per stage environment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "deploy.yml"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def test_the_workflow_is_valid_for_github() -> None:
    result = _validate(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path, workflow: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(workflow, default=str))
    broken["jobs"]["deploy"]["permissions"]["id-token"] = "always"  # not read/write/none
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    assert _validate(path).returncode != 0


def test_tests_run_before_a_deployment_with_oidc_and_a_stage_environment(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {}  # nothing unless a job asks
    test, deploy = workflow["jobs"]["test"], workflow["jobs"]["deploy"]
    assert [step["run"] for step in test["steps"] if "run" in step] == ["make test"]
    assert "id-token" not in test["permissions"]
    assert deploy["needs"] == "test"
    assert deploy["permissions"] == {"contents": "read", "id-token": "write"}
    stage = "${{ inputs.stage || 'dev' }}"
    assert deploy["environment"]["name"] == stage
    (assume,) = [step for step in deploy["steps"] if step.get("uses", "").startswith("aws-actions/configure-aws-")]
    assert assume["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert deploy["steps"][-1]["run"] == f"make deploy STAGE={stage} APPROVAL=never"
    # Short-lived credentials only: no stored keys anywhere in the file.
    text = WORKFLOW.read_text()
    assert "aws-access-key-id" not in text and "secrets." not in text


def test_the_stages_offered_are_the_deployable_stages_of_cdk_json(workflow: dict[str, Any]) -> None:
    stages = set(json.loads((ROOT / "cdk.json").read_text())["context"]["stages"]) - {"local"}
    # PyYAML reads the key `on` as True (YAML 1.1).
    dispatch = workflow[True]["workflow_dispatch"]["inputs"]["stage"]
    assert set(dispatch["options"]) == stages
