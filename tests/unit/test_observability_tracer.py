"""The Tracer of `seller_insights.observability`: off without the X-Ray SDK, on with only what is used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from seller_insights import observability

REPO = Path(__file__).resolve().parents[2]


def _in_fresh_interpreter(code: str, **env: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
        env={"PATH": "", "PYTHONPATH": str(REPO / "layers" / "shared" / "python"), "AWS_DEFAULT_REGION": "us-east-1",
             **env},
    )
    return out.stdout.strip()


def test_a_disabled_tracer_never_loads_the_xray_sdk_and_still_runs_the_handler() -> None:
    code = (
        "import sys\n"
        "from seller_insights.observability import get_tracer\n"
        "tracer = get_tracer()\n"
        "handler = tracer.capture_lambda_handler(lambda event, context: event['n'] + 1)\n"
        "print(tracer.disabled, handler({'n': 41}, None), 'aws_xray_sdk.core' in sys.modules)\n"
    )
    assert _in_fresh_interpreter(code, POWERTOOLS_TRACE_DISABLED="true") == "True 42 False"
    # Outside Lambda (no LAMBDA_TASK_ROOT) Powertools turns tracing off by itself.
    assert _in_fresh_interpreter(code) == "True 42 False"


def test_a_disabled_tracer_lets_the_handlers_error_through() -> None:
    tracer = observability.get_tracer()
    assert tracer.disabled

    @tracer.capture_lambda_handler
    def failing(event: dict[str, str], context: object) -> None:
        raise ValueError(event["reason"])

    with pytest.raises(ValueError, match="broken"):
        failing({"reason": "broken"}, None)


def test_an_enabled_tracer_patches_botocore_and_requests_only_if_the_function_imported_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "requests", raising=False)
    assert observability.traced_libraries() == ("botocore",)
    monkeypatch.setitem(sys.modules, "requests", object())  # type: ignore[arg-type]
    assert observability.traced_libraries() == ("botocore", "requests")
