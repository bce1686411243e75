"""The dependency layer build: what it keeps, what it drops, when it does nothing."""

from __future__ import annotations

from pathlib import Path

from layers.deps import build


def test_runtime_provided_packages_are_removed(tmp_path: Path) -> None:
    for name in ("boto3", "botocore-1.0.dist-info", "s3transfer", "requests", "jmespath"):
        (tmp_path / name).mkdir()
    (tmp_path / "six.py").write_text("")
    build.remove_runtime_provided(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jmespath", "requests", "six.py"]


def test_unchanged_requirements_are_a_no_op(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("requests==2.34.2\n")
    out = tmp_path / "layer"
    (out / "python").mkdir(parents=True)
    digest = build.requirements_digest(requirements)
    (out / build.STAMP_NAME).write_text(digest + "\n")
    assert build.is_up_to_date(out, digest)
    assert build.build(out, requirements) == 0  # returns before pip would run
    requirements.write_text("requests==2.34.3\n")
    assert not build.is_up_to_date(out, build.requirements_digest(requirements))


def test_compiled_files_need_no_timestamps(tmp_path: Path) -> None:
    (tmp_path / "module.py").write_text("VALUE = 1\n")
    build.compile_site(tmp_path)
    pyc = next((tmp_path / "__pycache__").glob("module.cpython-313.pyc"))
    flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
    assert flags == 0b01  # hash-based, unchecked (PEP 552)
