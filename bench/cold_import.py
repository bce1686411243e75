"""Cold import of every handler against a bare `import boto3`, side by side, laid out as Lambda does it.

Usage: python -m bench.cold_import [--runs 15] [--outside-lambda] [--code-source] [--no-extras]
       python -m bench.cold_import --importtime report_fetcher.handler [--outside-lambda] [--code-source]

Layout (built under build/bench/cold_import/, from the packages installed in this environment, offline):
- `runtime/`: boto3 and what it needs (botocore, s3transfer, jmespath, dateutil, urllib3, six): what the
  Lambda Python runtime provides in /var/runtime. Byte-compiled (assumption: the runtime ships them so).
- `deps/`: the closure of requirements.txt without boto3/botocore/s3transfer, byte-compiled the way
  `layers.deps.build` compiles the deps layer (unchecked-hash .pyc). Nothing else of the development
  environment is on the path: the X-Ray SDK's `patch_all` imports every supported library it finds
  (httpx, sqlite3, ...), so a development venv would time libraries Lambda never sees.
- `task/` and `shared/`: `functions/` and `layers/shared/python/` byte-compiled as the CDK assets ship
  them (infra/bytecode.py), imported with `sys.dont_write_bytecode` because /var/task and /opt are
  read-only. `--code-source` copies them without bytecode, as they shipped before infra/bytecode.py:
  every cold start then compiles them.

Each measurement is a new `python -I -S` whose sys.path is [task, shared, deps, runtime] and whose
environment is a Lambda function's (LAMBDA_TASK_ROOT, AWS_LAMBDA_FUNCTION_NAME, X-Ray daemon address,
POWERTOOLS_SERVICE_NAME = the duty, no credentials), so Powertools' Tracer is enabled and patches as in
AWS; `--outside-lambda` leaves the Lambda variables out and sets POWERTOOLS_TRACE_DISABLED=true (the
tests and the local stack). It times one import statement. Every round times the bare `import boto3`
and every handler once, in a rotated order (interleaved, so load from other processes hits all of them
alike); the table gives medians over the rounds and each handler's ratio to the bare boto3 median.

Extras: what a Powertools building block that issue 9 adopts would add at import on top of a handler
(the handler is imported first, untimed, then the extra import is timed), in the same rounds.

`--importtime MODULE` prints, instead, the 40 largest cumulative entries of `python -X importtime` for
one import in the same layout and environment (where the time goes).

Results: bench/results/cold_import[_outside_lambda][_code_source].json.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.metadata
import json
import os
import py_compile
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bench import measured_on
from layers.deps.build import RUNTIME_PROVIDED, compile_site

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
LAYOUT = REPO / "build" / "bench" / "cold_import"
BASELINE = "boto3"
HANDLERS = (
    "oauth_callback.handler",
    "token_refresher.handler",
    "report_fetcher.handler",
    "retention_sweeper.handler",
    "data_requests.handler",
)
# The Powertools building blocks issue 9 moves the handlers onto, and the handlers that will import them.
EXTRAS = {
    "event_handler": (
        "from aws_lambda_powertools.event_handler import APIGatewayHttpResolver",
        ("oauth_callback.handler", "data_requests.handler"),
    ),
    "batch": (
        "from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response",
        ("token_refresher.handler", "report_fetcher.handler"),
    ),
    "idempotency": (
        "from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig, "
        "idempotent_function",
        ("token_refresher.handler",),
    ),
}
PROBE = """\
import sys, time
sys.dont_write_bytecode = True
sys.path[:0] = {paths!r}
{setup}
t, c = time.perf_counter(), time.process_time()
{statement}
print(time.perf_counter() - t, time.process_time() - c)
"""


@dataclass(frozen=True)
class Target:
    name: str  # the row of the table
    statement: str  # timed
    setup: str = ""  # run before, untimed
    duty: str = "bench"


# --- layout -------------------------------------------------------------------------------------------


def closure(roots: list[str]) -> set[str]:
    """Distribution names needed by the requirement strings `roots`, extras and markers applied."""
    seen: set[str] = set()
    pending = [Requirement(root) for root in roots]
    while pending:
        requirement = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or []:
            dependency = Requirement(line)
            marker = dependency.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in requirement.extras or {""}):
                pending.append(Requirement(str(dependency).split(";")[0]))
    return seen


def copy_distributions(names: set[str], site: Path) -> None:
    for name in sorted(names):
        dist = importlib.metadata.distribution(name)
        origin = Path(str(dist.locate_file("")))
        for file in dist.files or []:
            parts = Path(file).parts
            if parts[0] == ".." or "__pycache__" in parts:
                continue
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin / file, target)


def runtime_requirements() -> list[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def third_party_layout() -> tuple[Path, Path]:
    """`deps/` and `runtime/`, rebuilt only when the installed versions or requirements.txt change."""
    runtime_names = closure(["boto3"])
    deps_names = closure(runtime_requirements()) - {canonicalize_name(n) for n in RUNTIME_PROVIDED}
    stamp = json.dumps({name: importlib.metadata.version(name) for name in sorted(runtime_names | deps_names)}
                       | {"requirements": runtime_requirements()}, sort_keys=True)
    deps, runtime, stamp_file = LAYOUT / "deps", LAYOUT / "runtime", LAYOUT / "third_party.json"
    if not (stamp_file.is_file() and stamp_file.read_text() == stamp):
        for site, names in ((deps, deps_names), (runtime, runtime_names)):
            shutil.rmtree(site, ignore_errors=True)
            copy_distributions(names, site)
            compile_site(site)
        stamp_file.write_text(stamp)
    return deps, runtime


def code_layout(bytecode: bool) -> tuple[Path, Path]:
    """`task/` and `shared/`: the product's code as its assets ship it, without bytecode unless asked."""
    task, shared = LAYOUT / "task", LAYOUT / "shared"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for source, target in ((REPO / "functions", task), (REPO / "layers" / "shared" / "python", shared)):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, ignore=ignore)
        if bytecode:  # the way the deps layer is compiled (layers.deps.build.compile_site), in this process
            compileall.compile_dir(target, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return task, shared


# --- measurement --------------------------------------------------------------------------------------


def environment(duty: str, task: Path, in_lambda: bool) -> dict[str, str]:
    prefixes = ("AWS_", "POWERTOOLS_", "LAMBDA_", "_X_AMZN", "_AWS_XRAY", "PYTHON")
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    env.update({"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_SERVICE_NAME": duty,
                "POWERTOOLS_METRICS_NAMESPACE": "SellerInsights", "LOG_LEVEL": "INFO"})
    if in_lambda:
        env.update({"LAMBDA_TASK_ROOT": str(task), "AWS_LAMBDA_FUNCTION_NAME": f"bench-{duty}",
                    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
                    "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000", "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
                    "_AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129", "_AWS_XRAY_DAEMON_PORT": "2000"})
    else:
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    return env


def run_probe(target: Target, paths: list[str], env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    probe = PROBE.format(paths=paths, setup=target.setup, statement=target.statement)
    out = subprocess.run(  # noqa: S603 - our own interpreter and a fixed probe
        [sys.executable, "-I", "-S", *options, "-c", probe], capture_output=True, text=True, check=False, env=env,
        cwd=paths[0],
    )
    if out.returncode != 0:
        raise SystemExit(f"{target.name} failed:\n{out.stderr}")
    return out


def time_once(target: Target, paths: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU milliseconds of the statement."""
    wall, cpu = run_probe(target, paths, env).stdout.strip().splitlines()[-1].split()
    return float(wall) * 1000, float(cpu) * 1000


def print_importtime(module: str, paths: list[str], env: dict[str, str]) -> None:
    lines = run_probe(Target(module, f"import {module}"), paths, env, "-X", "importtime").stderr.splitlines()
    entries = [line.removeprefix("import time:").split("|") for line in lines if line.startswith("import time:")]
    rows = sorted(((int(total), int(own), name.rstrip()) for own, total, name in entries[1:]), reverse=True)
    print(f"{'cumulative ms':>13} {'self ms':>8}  module (indent = nesting)")
    for total, own, name in rows[:40]:
        print(f"{total / 1000:>13.1f} {own / 1000:>8.1f} {name}")


def targets(extras: bool) -> list[Target]:
    found = [Target(BASELINE, f"import {BASELINE}")]
    found += [Target(module, f"import {module}", duty=module.split(".")[0]) for module in HANDLERS]
    if extras:
        for extra, (statement, modules) in EXTRAS.items():
            found += [Target(f"{module} + {extra}", statement, setup=f"import {module}", duty=module.split(".")[0])
                      for module in modules]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds; each times every target once")
    parser.add_argument("--outside-lambda", action="store_true",
                        help="the tests' and local stack's environment: no Lambda variables, tracing disabled")
    parser.add_argument("--code-source", action="store_true",
                        help="functions/ and the shared layer without .pyc, as they shipped before infra/bytecode.py")
    parser.add_argument("--no-extras", action="store_true", help="skip the Powertools building blocks")
    parser.add_argument("--importtime", metavar="MODULE", help="where the import of MODULE spends its time")
    args = parser.parse_args()
    in_lambda = not args.outside_lambda
    deps, runtime = third_party_layout()
    task, shared = code_layout(not args.code_source)
    paths = [str(task), str(shared), str(deps), str(runtime)]
    if args.importtime:
        print_importtime(args.importtime, paths, environment(args.importtime.split(".")[0], task, in_lambda))
        return
    chosen = targets(not args.no_extras)
    envs = {target.duty: environment(target.duty, task, in_lambda) for target in chosen}
    wall: dict[str, list[float]] = {target.name: [] for target in chosen}
    cpu: dict[str, list[float]] = {target.name: [] for target in chosen}
    load_before = os.getloadavg()[0]
    for round_ in range(args.runs):
        shift = round_ % len(chosen)
        for target in chosen[shift:] + chosen[:shift]:
            wall_ms, cpu_ms = time_once(target, paths, envs[target.duty])
            wall[target.name].append(wall_ms)
            cpu[target.name].append(cpu_ms)
    result = {
        "environment": "lambda" if in_lambda else "outside_lambda",
        "code_bytecode": not args.code_source,
        "runs": args.runs,
        "handlers": [{"handler": module, **summary(wall, cpu, module)} for module in HANDLERS],
        "bare_boto3": summary(wall, cpu, BASELINE),
        "extras": [{"handler": target.setup.removeprefix("import "), "extra": target.name.split(" + ")[1],
                    "statement": target.statement, **summary(wall, cpu, target.name, target.setup[7:])}
                   for target in chosen if target.setup],
        **measured_on(),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "note": "fresh `python -I -S` per measurement, interleaved rounds, medians of wall and CPU (process) "
                "time; Lambda layout (module docstring); function and shared code "
                + ("compiled at import (shipped without .pyc)" if args.code_source else "from .pyc, as shipped"),
    }
    name = f"cold_import{'' if in_lambda else '_outside_lambda'}{'_code_source' if args.code_source else ''}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"written to bench/results/{name}")


def summary(
    wall: dict[str, list[float]], cpu: dict[str, list[float]], name: str, on_top_of: str = ""
) -> dict[str, float]:
    """Medians of `name` (ms) and its ratio to the bare boto3; for an extra, the ratio of handler + extra."""
    base = statistics.median(wall[on_top_of]) if on_top_of else 0.0
    base_cpu = statistics.median(cpu[on_top_of]) if on_top_of else 0.0
    wall_ms, cpu_ms = statistics.median(wall[name]), statistics.median(cpu[name])
    return {"wall_ms": round(wall_ms, 1), "cpu_ms": round(cpu_ms, 1),
            "wall_min_ms": round(min(wall[name]), 1), "wall_max_ms": round(max(wall[name]), 1),
            "wall_ratio": round((base + wall_ms) / statistics.median(wall[BASELINE]), 2),
            "cpu_ratio": round((base_cpu + cpu_ms) / statistics.median(cpu[BASELINE]), 2)}


def print_table(result: dict[str, Any]) -> None:
    bare = result["bare_boto3"]
    print(f"load average {result['load_average'][0]} at the start, {result['load_average'][1]} at the end")
    print(f"{'handler':<28} {'wall ms':>8} {'boto3 wall':>10} {'ratio':>6} {'cpu ms':>8} {'boto3 cpu':>9} {'ratio':>6}")
    for row in result["handlers"]:
        print(f"{row['handler']:<28} {row['wall_ms']:>8} {bare['wall_ms']:>10} {row['wall_ratio']:>6} "
              f"{row['cpu_ms']:>8} {bare['cpu_ms']:>9} {row['cpu_ratio']:>6}")
    for row in result["extras"]:
        print(f"{row['handler'] + ' + ' + row['extra']:<44} adds {row['wall_ms']:>6} ms wall, {row['cpu_ms']:>6} ms "
              f"cpu (ratio with it {row['wall_ratio']} wall, {row['cpu_ratio']} cpu)")


if __name__ == "__main__":
    main()
