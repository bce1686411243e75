"""The local stack as a user runs it: `python -m local serve` in a subprocess, driven over HTTP only.

Shared by tests/e2e_local and tests/browser through tests/conftest.py, so one serve process
serves the whole session.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.log_guard import LogGuard

REPO = Path(__file__).resolve().parents[2]
# The first start synthesizes the CDK app; later starts read the cached template.
READY_TIMEOUT = 240


@dataclass
class Serve:
    process: subprocess.Popen[str]
    info: dict[str, Any]
    stderr_path: Path

    def terminate(self, timeout: float = 30) -> tuple[int, str]:
        """SIGTERM; the exit code and whatever else reached stdout."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        assert self.process.stdout is not None
        return code, self.process.stdout.read()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def launch(stderr_path: Path, args: tuple[str, ...] = (), env_extra: dict[str, str] | None = None) -> Serve:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    for name in ("AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        env.pop(name, None)
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "local", "serve", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert process.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            line = process.stdout.readline()
            if line:
                return Serve(process, json.loads(line), stderr_path)
        if process.poll() is not None:
            break
    process.kill()
    process.wait()
    tail = stderr_path.read_text(errors="replace")[-3000:]
    pytest.fail(f"`python -m local serve` did not print its JSON line:\n{tail}")


def stack_table(info: dict[str, Any], purpose: str) -> Any:
    """A DynamoDB table of a `serve` stack, by purpose, through the AWS endpoint it printed (to look)."""
    import boto3

    dynamodb = boto3.resource("dynamodb", endpoint_url=info["aws"], region_name=info["region"])
    return dynamodb.Table(info["resources"]["tables"][purpose])


def every_item(read: Callable[..., dict[str, Any]], **kwargs: Any) -> list[dict[str, Any]]:
    """The items of every page of a Query or Scan (`read`: a table's `query` or `scan`), read consistently.
    Tests may scan a stack's tables; the product never scans."""
    kwargs = {"ConsistentRead": True, **kwargs}
    items: list[dict[str, Any]] = []
    while True:
        page = read(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def seller_items(info: dict[str, Any], seller: str, prefix: str = "") -> list[dict[str, Any]]:
    """The items of the seller's partition (`pk=SELLER#{seller}`) whose sort key starts with `prefix`."""
    query = stack_table(info, "connections").query
    if not prefix:  # DynamoDB refuses an empty string in a key condition
        return every_item(query, KeyConditionExpression="pk = :pk",
                          ExpressionAttributeValues={":pk": f"SELLER#{seller}"})
    return every_item(query, KeyConditionExpression="pk = :pk AND begins_with(sk, :sk)",
                      ExpressionAttributeValues={":pk": f"SELLER#{seller}", ":sk": prefix})


def stack_seller_key(info: dict[str, Any], seller_id: str) -> str:
    """The opaque seller key a `serve` stack computes for `seller_id`, from the key it generated."""
    import boto3

    from seller_insights.pseudonyms import keyed

    client = boto3.client("secretsmanager", endpoint_url=info["aws"], region_name=info["region"])
    (arn,) = [entry["ARN"] for entry in client.list_secrets()["SecretList"]
              if {"Key": "seller-insights:purpose", "Value": "seller_keys"} in entry.get("Tags", [])]
    return keyed(client.get_secret_value(SecretId=arn)["SecretString"].encode(), seller_id)


def secret_findings(text: str) -> list[str]:
    """The root log guard's detectors, applied to the serve process's own log."""
    return LogGuard().findings(text)


def iam_denials(log: str) -> list[str]:
    """The local IAM guard's denial lines (local/iam/guard.py logs each at WARNING)."""
    return [line for line in log.splitlines() if "IAM denied" in line]


@contextlib.contextmanager
def serving(stderr_path: Path, args: tuple[str, ...] = (), *, denials_expected: bool = False) -> Iterator[Serve]:
    """A `serve` process for the duration; on the way out: exit code 0 after SIGTERM, nothing but the
    JSON line on stdout, no secret material in its log, and no AWS call of a function denied by the
    local IAM guard (a handler that swallowed an AccessDenied would otherwise go unnoticed)."""
    started = launch(stderr_path, args)
    yield started
    code, rest = started.terminate()
    assert code == 0, started.stderr()[-3000:]
    assert rest == "", f"serve wrote more than its JSON line on stdout: {rest[:500]!r}"
    findings = secret_findings(started.stderr())
    assert not findings, f"secret material in the serve log: {findings}"
    if not denials_expected:
        denied = iam_denials(started.stderr())
        assert not denied, "the local IAM guard denied calls:\n" + "\n".join(denied[:10])


def stack_of_its_own(name: str) -> Any:
    """An `info` fixture, module-scoped, for a module that needs a serve process of its own (it moves the
    stack's clock, or counts what only its own tests caused): `info = stack_of_its_own("reports")`."""

    @pytest.fixture(scope="module", name="info")
    def own_info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
        with serving(tmp_path_factory.mktemp(name) / "stderr.log") as started:
            yield started.info

    return own_info


@pytest.fixture(scope="session")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """The stack shared by tests that do not move its clock far."""
    with serving(tmp_path_factory.mktemp("serve") / "stderr.log") as started:
        yield started


@pytest.fixture(scope="session")
def info(serve: Serve) -> dict[str, Any]:
    return serve.info
