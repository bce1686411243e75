"""Build the third-party dependency layer for Lambda (Python 3.13, arm64).

Usage: ``python -m layers.deps.build [--out build/layers/deps] [--requirements requirements.txt]``

The layer gets ``OUT/python/`` with the wheels of ``requirements.txt`` for
manylinux2014_aarch64 / CPython 3.13, without boto3/botocore/s3transfer (the Lambda runtime
ships them), byte-compiled so cold starts do not compile every module. A stamp file holding the
sha256 of the requirements makes a second run with unchanged requirements a no-op.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "build" / "layers" / "deps"
DEFAULT_REQUIREMENTS = REPO_ROOT / "requirements.txt"
STAMP_NAME = ".requirements.sha256"
# Provided by the Lambda Python runtime; shipping them would only bloat the layer.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")
TARGET_PYTHON = (3, 13)


def requirements_digest(requirements: Path) -> str:
    return hashlib.sha256(requirements.read_bytes()).hexdigest()


def is_up_to_date(out: Path, digest: str) -> bool:
    stamp = out / STAMP_NAME
    return (out / "python").is_dir() and stamp.is_file() and stamp.read_text().strip() == digest


def pip_install(requirements: Path, site: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--platform",
        "manylinux2014_aarch64",
        "--implementation",
        "cp",
        "--python-version",
        "{}.{}".format(*TARGET_PYTHON),
        "--only-binary=:all:",
        "--target",
        str(site),
        "-r",
        str(requirements),
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True)  # noqa: S603 fixed argv
    # The machine's pip config lists index locations that do not exist here; pip warns
    # "Location ... is ignored" for each package. Drop that noise, keep every other message.
    messages = "\n".join(
        line
        for line in result.stderr.splitlines()
        if not (line.startswith("WARNING: Location") and "is ignored" in line)
    )
    if result.returncode != 0:
        raise SystemExit(f"pip install failed ({result.returncode}):\n{messages or result.stdout}")
    if messages:
        print(messages, file=sys.stderr)


def remove_runtime_provided(site: Path) -> None:
    for entry in site.iterdir():
        # Match both the package folders and their *.dist-info metadata.
        base = entry.name.split("-", 1)[0].lower()
        if base in RUNTIME_PROVIDED:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def compile_site(site: Path) -> None:
    # UNCHECKED_HASH: the .pyc stays valid whatever the file timestamps in the zip are.
    ok = compileall.compile_dir(
        str(site),
        quiet=1,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not ok:
        raise SystemExit(f"byte-compiling {site} failed")


def layer_size(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def build(out: Path, requirements: Path) -> int:
    if sys.version_info[:2] != TARGET_PYTHON:
        raise SystemExit(
            "the layer must be compiled by Python {}.{} (the Lambda runtime), not {}.{}".format(
                *TARGET_PYTHON, *sys.version_info[:2]
            )
        )
    if not requirements.is_file():
        raise SystemExit(f"requirements file not found: {requirements}")
    digest = requirements_digest(requirements)
    if is_up_to_date(out, digest):
        print(f"layer up to date: {out} ({layer_size(out)} bytes)")
        return 0

    # Build next to the target and swap, so an interrupted build never leaves a half layer.
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    site = staging / "python"
    site.mkdir(parents=True)
    pip_install(requirements, site)
    remove_runtime_provided(site)
    compile_site(site)
    (staging / STAMP_NAME).write_text(digest + "\n")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    print(f"layer built: {out} ({layer_size(out)} bytes)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m layers.deps.build", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="layer folder (default: %(default)s)")
    parser.add_argument(
        "--requirements", type=Path, default=DEFAULT_REQUIREMENTS, help="requirements file (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    return build(args.out.resolve(), args.requirements.resolve())


if __name__ == "__main__":
    raise SystemExit(main())
