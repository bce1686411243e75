"""What log redaction costs per line as registered secrets pile up, and what the registry holds in a warm
container.

Usage: python -m bench.redaction [--sizes 0,16,64,256,512,2048,4096,10000] [--invocations 20000]

- Per line: `seller_insights.redaction` scrubs each log line of the literal values it holds. For each
  number N of registered values (shaped like the product's: OAuth states and binding cookies, 20-letter
  authorization codes, amazon_state values, presigned URLs), the time of one scrub of a typical Powertools
  JSON line (~350 characters, no secret in it), of a long line (~3,500 characters, an exception with its
  traceback) and of a line that holds one registered value, for four ways of matching: the product's
  matcher (direct scan up to DIRECT_SCAN_LIMIT values, tail lookup above), the direct scan alone, the tail
  lookup alone, and the previous implementation (sort the registry on every call, then scan). Best of 7
  repeats; microseconds per line. Also the time the registry takes to make a new matcher (once per change
  of the set of values) and the whole `redact` (literals and shape patterns) of the typical line.
- Warm container: `--invocations` invocation scopes in a row, each registering 3 values and logging once;
  the registry's sizes (pinned, LRU) and the memory tracemalloc counts after half and after all of them
  must be the same: bounded by the LRU capacity, not by the number of invocations.
"""

from __future__ import annotations

import argparse
import json
import secrets
import string
import sys
import timeit
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import measured_on

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "redaction.json"
REPEATS = 7

TYPICAL_LINE = (
    '{"level":"INFO","location":"_connect:105","message":"consent started","timestamp":"2026-11-29 12:00:00,000+0000",'
    '"service":"oauth_callback","cold_start":false,"function_name":"oauth_callback","function_memory_size":"256",'
    '"function_arn":"arn:aws:lambda:us-east-1:123456789012:function:oauth_callback",'
    '"function_request_id":"1f0e6c52-6f1b-4c1f-9d7e-3a8a7c1b2d3e","flow":"website"}'
)
LONG_LINE = TYPICAL_LINE[:-1] + ',"exception":"' + (
    'Traceback (most recent call last):\\n  File \\"/var/task/oauth_callback/service.py\\", line 172, in complete\\n'
    '    self._exchange(code)\\nbotocore.exceptions.ClientError: An error occurred (ProvisionedThroughputExceeded)'
) * 12 + '"}'


def _setup_paths() -> None:
    sys.path.insert(0, str(REPO / "layers" / "shared" / "python"))


def _values(count: int) -> list[str]:
    """Registered values in the product's shapes, in the mix a consent-heavy container sees."""
    letters = string.ascii_letters
    makers: list[Callable[[], str]] = [
        lambda: secrets.token_urlsafe(32),  # OAuth state
        lambda: secrets.token_urlsafe(32),  # binding cookie
        lambda: "".join(secrets.choice(letters) for _ in range(20)),  # spapi_oauth_code
        lambda: secrets.token_urlsafe(32),  # amazon_state
        lambda: ("https://tortuga-prod-na.s3-external-1.amazonaws.com/%2FNinetyDays/amzn1.tortuga.4.na."
                 f"{secrets.token_hex(16)}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20261129T120000Z"
                 f"&X-Amz-Expires=300&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261129%2Fus-east-1%2Fs3"
                 f"&X-Amz-Signature={secrets.token_hex(32)}"),  # a presigned document URL
    ]
    return [makers[i % len(makers)]() for i in range(count)]


def _per_line(seconds: float, number: int) -> float:
    return round(seconds / number * 1e6, 2)


def _time(function: Callable[[], object]) -> float:
    """Microseconds per call, best of REPEATS, with enough calls for ~0.1 s per repeat."""
    number = 1
    while timeit.timeit(function, number=number) < 0.02:
        number *= 4
    number = max(1, number * 5)
    return _per_line(min(timeit.repeat(function, number=number, repeat=REPEATS)), number)


def _previous(values: list[str]) -> Callable[[str], str]:
    """The implementation this one replaced: the registry sorted on every call, then scanned."""
    from seller_insights.redaction import REDACTED

    def scrub(text: str) -> str:
        for value in sorted(values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    return scrub


def measure_lines(count: int) -> dict[str, Any]:
    from seller_insights.redaction import DIRECT_SCAN_LIMIT, REDACTED, _LiteralRegistry, _Matcher

    values = _values(count)
    hit_line = TYPICAL_LINE[:-1] + (f',"note":"{values[count // 2]}"}}' if values else "}")
    matchers = {
        "product": _Matcher.of(values).scrub,
        "direct_scan": _Matcher.of(values, direct_limit=sys.maxsize).scrub,
        "tail_lookup": _Matcher.of(values, direct_limit=-1).scrub,
        "previous": _previous(values),
    }
    if values:
        for name, scrub in matchers.items():
            assert REDACTED in scrub(hit_line) and values[count // 2] not in scrub(hit_line), name
    lines = {"typical": TYPICAL_LINE, "long": LONG_LINE, "with_a_secret": hit_line}
    timings = {name: {kind: _time(lambda s=scrub, t=text: s(t)) for kind, text in lines.items()}  # type: ignore[misc]
               for name, scrub in matchers.items()}
    registry = _LiteralRegistry(capacity=max(count, 1))
    for value in values:
        registry.add(value)

    def rebuild() -> None:
        registry._version += 1  # as after a change of the set of values
        registry.matcher()

    return {"values": count, "product_path": "direct_scan" if count <= DIRECT_SCAN_LIMIT else "tail_lookup",
            "microseconds_per_line": timings, "matcher_rebuild_microseconds": _time(rebuild)}


def measure_redact(count: int) -> float:
    """The whole redact() of the typical line (literals and shape patterns) with `count` values held."""
    from seller_insights import redaction

    registry = redaction._LiteralRegistry(capacity=count)
    for value in _values(count):
        registry.add(value)
    saved = redaction._registry
    redaction._registry = registry
    try:
        return _time(lambda: redaction.redact(TYPICAL_LINE))
    finally:
        redaction._registry = saved


def measure_warm_container(invocations: int) -> dict[str, Any]:
    from seller_insights import redaction

    registry = redaction._LiteralRegistry()
    saved = redaction._registry
    redaction._registry = registry
    checkpoints: dict[str, Any] = {}
    tracemalloc.start()
    try:
        for done in range(1, invocations + 1):
            with redaction.scope():
                redaction.register_secret(*_values(3))
                redaction.redact(TYPICAL_LINE)
            if done in (invocations // 2, invocations):
                redaction.redact(TYPICAL_LINE)  # the matcher of the final set
                current, _ = tracemalloc.get_traced_memory()
                pinned, recent = registry.sizes()
                checkpoints[str(done)] = {"pinned": pinned, "lru": recent, "traced_kib": round(current / 1024)}
    finally:
        tracemalloc.stop()
        redaction._registry = saved
    return checkpoints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,16,64,256,512,2048,4096,10000")
    parser.add_argument("--invocations", type=int, default=20_000)
    args = parser.parse_args()
    _setup_paths()
    from seller_insights.redaction import DIRECT_SCAN_LIMIT, LRU_CAPACITY

    sizes = [int(size) for size in args.sizes.split(",")]
    lines = [measure_lines(size) for size in sizes]
    warm = measure_warm_container(args.invocations)
    first, last = warm[str(args.invocations // 2)], warm[str(args.invocations)]
    bounded = last["lru"] <= LRU_CAPACITY and last["pinned"] == 0 and last["traced_kib"] <= first["traced_kib"] * 1.1
    summary = {
        "lines": lines,
        "redact_typical_line_microseconds": {str(size): measure_redact(size) for size in (0, LRU_CAPACITY)},
        "warm_container": warm,
        "memory_bounded": bounded,
        "direct_scan_limit": DIRECT_SCAN_LIMIT,
        "lru_capacity": LRU_CAPACITY,
        **measured_on(),
        "command": f"python -m bench.redaction --sizes {args.sizes} --invocations {args.invocations}",
    }
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    if not bounded:
        sys.exit("the registry grew with the number of invocations")


if __name__ == "__main__":
    main()
