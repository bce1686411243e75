"""The docs match the code: README's layout names every module, and no doc or docstring cites a file
that is not in the repository (paths that do not exist, or design notes kept outside it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Folders whose every module README's layout names.
LAID_OUT = ("functions", "layers/shared/python/seller_insights", "infra", "local", "ops")
# Notes of the design team that live outside this repository: a citation of them cannot be followed.
OUTSIDE_NOTES = re.compile(r"security\.md|field-lessons|local-contract|spapi-protocol|\.\./shared/|design/")
CITED_PATH = re.compile(r"(?<![\w./-])((?:docs|tests|functions|layers|infra|local|bench|ops)/[\w./-]*\w)")


def _tracked(*suffixes: str) -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / name for name in names.split() if name.endswith(suffixes) and (ROOT / name).is_file()]


def _layout() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Repository layout")
    return readme[start:readme.index("\n## ", start + 1) if "\n## " in readme[start + 1:] else None]


def test_readme_layout_names_every_module() -> None:
    layout = _layout()
    missing = []
    for folder in LAID_OUT:
        for module in (ROOT / folder).rglob("*.py"):
            if module.stem.startswith("__") or "models" in module.parts or "templates" in module.parts:
                continue
            if not re.search(rf"\b{re.escape(module.stem)}\b", layout):
                missing.append(str(module.relative_to(ROOT)))
    assert missing == [], "README's repository layout does not name these modules"


def test_docs_and_docstrings_cite_only_what_the_repository_holds() -> None:
    outside, absent = [], []
    for path in _tracked(".py", ".md"):
        if "local/amazon/models" in path.as_posix() or path == Path(__file__):  # models: Amazon's; this: the patterns
            continue
        text = path.read_text(encoding="utf-8")
        where = str(path.relative_to(ROOT))
        outside += [f"{where}: {hit.group(0)}" for hit in OUTSIDE_NOTES.finditer(text)]
        for hit in CITED_PATH.finditer(text):
            cited = hit.group(1)
            if text[hit.end():hit.end() + 1] in ("*", "["):  # a pattern: something must match it
                if next(ROOT.glob(f"{cited}*"), None) is None:
                    absent.append(f"{where}: {cited}*")
                continue
            if not any((ROOT / candidate).exists() for candidate in (cited, f"{cited}.py")):
                absent.append(f"{where}: {cited}")
    assert outside == [], "cites design notes kept outside the repository"
    assert absent == [], "cites paths that do not exist"
