"""Code assets shipped with their bytecode.

Lambda cannot write `__pycache__`, so a module shipped without its `.pyc` is compiled again at every cold
start: 55-77 ms per handler (`python -m bench.cold_import --code-source`, bench/README.md). Synthesis
therefore packages a copy of `functions/` and of the shared layer with unchecked-hash `.pyc` beside the
sources, compiled by the same Python 3.13 as the runtime (as `layers.deps.build` does for the deps layer).
Each copy is named by the digest of its sources, so a synthesis reuses it until a source changes, and it
is written under a temporary name and renamed, so concurrent syntheses never see half a copy.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

from infra import REPO_ROOT
from layers.deps.build import TARGET_PYTHON, compile_site

COMPILED_DIR = REPO_ROOT / "build" / "compiled"
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc")


def sources_digest(source: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(path for path in source.rglob("*") if path.is_file()):
        if "__pycache__" in file.parts or file.suffix == ".pyc":
            continue
        digest.update(file.relative_to(source).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()[:16]


def compiled_copy(source: Path, name: str) -> Path:
    """`source` with its `.pyc`, under build/compiled/{name}-{digest}/ (built once per digest)."""
    if sys.version_info[:2] != TARGET_PYTHON:
        raise RuntimeError(
            "synthesis compiles the functions' bytecode and must run on Python {}.{} (the Lambda runtime), "
            "not {}.{}: use the project's .venv (make synth)".format(*TARGET_PYTHON, *sys.version_info[:2])
        )
    target = COMPILED_DIR / f"{name}-{sources_digest(source)}"
    if target.is_dir():
        return target
    COMPILED_DIR.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=COMPILED_DIR))
    shutil.copytree(source, staging / "code", ignore=_SKIP)
    compile_site(staging / "code")
    try:
        (staging / "code").rename(target)
    except OSError:  # another synthesis finished the same copy first
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
