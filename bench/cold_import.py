"""Cold import time of a function's handler module, in fresh interpreter processes.

Usage: python -m bench.cold_import [--module oauth_callback.handler] [--runs 15]

Each run starts a new Python with the same sys.path as Lambda would give (function code, the
shared layer, the installed dependencies) and times `import <module>` alone. The median and the
spread go to bench/results/cold_import.json with the machine's description.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench import measured_on

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "cold_import.json"
PROBE = (
    "import sys, time; sys.path[:0] = {paths!r}; t = time.perf_counter(); import {module}; "
    "print(time.perf_counter() - t)"
)


def measure(module: str, runs: int) -> list[float]:
    paths = [str(REPO / "functions"), str(REPO / "layers" / "shared" / "python")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"POWERTOOLS_SERVICE_NAME": "bench", "AWS_DEFAULT_REGION": "us-east-1"})
    timings = []
    for _ in range(runs):
        out = subprocess.run(  # noqa: S603 - our own interpreter and a fixed probe
            [sys.executable, "-c", PROBE.format(paths=paths, module=module)],
            capture_output=True, text=True, check=True, env=env, cwd=REPO,
        )
        timings.append(float(out.stdout.strip()))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", default="oauth_callback.handler")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    timings = measure(args.module, args.runs)
    result = {
        "module": args.module,
        "runs": args.runs,
        "median_ms": round(statistics.median(timings) * 1000, 1),
        "min_ms": round(min(timings) * 1000, 1),
        "max_ms": round(max(timings) * 1000, 1),
        **measured_on(),
        "note": "import only (no AWS client is built at import time); .pyc already compiled",
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
