"""`python -m ops` against a tiny local API that checks each SigV4 signature with local/sigv4.py."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from local import sigv4
from ops.cli import main

ACCESS_KEY, SECRET_KEY = "AKIAOPSCLITEST000001", "ops-cli-secret-key-for-the-unit-tests-0000"
SELLER = "A1OPSCLITEST01"
SIGNATURE = "X-Amz-Signature=" + "ab" * 32


def export_zip(tamper: bool = False) -> bytes:
    files = {"connections.json": b'[{"region": "NA"}]\n', "reports.csv": b"region,report_type\n",
             "reports/NA/T/2026-11-20T00:00:00Z_2026-11-21T00:00:00Z.tsv": b"a\tb\n" * 200_000}
    manifest = {"schema_version": "1", "files": [
        {"path": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in files.items()]}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data + (b"x" if tamper and name == "reports.csv" else b""))
        archive.writestr("manifest.json", json.dumps(manifest))
    return buffer.getvalue()


class FakeApi(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.calls: list[dict[str, Any]] = []
        self.forbid = False
        self.zip = export_zip()
        # What the status route answers, poll after poll (the last one repeats).
        self.statuses: list[dict[str, Any]] = [
            {"status": "QUEUED", "objects_done": 0, "bytes_done": 0},
            {"status": "RUNNING", "objects_done": 1, "bytes_done": 600_000},
            {"status": "DONE", "objects_done": 2, "bytes_done": 1_200_000, "files": 4, "expires_in": 900,
             "url": f"{self.url}/download/req1.zip?{SIGNATURE}"}]
        self.drains = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeApi

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/download/"):  # the "presigned" URL: not SigV4-signed
            self._answer(200, self.server.zip, "application/zip")
            return
        if self.path == "/_local/stack" and self.command == "GET":  # the fleet commands' inventory (--local)
            stack = {"stack": "SellerInsights-local", "region": "eu-west-1", "aws": self.server.url,
                     "admin": {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}, "inventory": []}
            self._answer(200, json.dumps(stack).encode())
            return
        if self.path == "/_local/drain" and self.command == "POST":  # the local stack's control endpoint
            self.server.drains += 1
            self._answer(200, b'{"delivered": 1, "failed": 0, "left": {}}')
            return
        outcome = sigv4.verify(method=self.command, url=f"http://{self.headers['Host']}{self.path}",
                               headers=dict(self.headers.items()), body=body, access_key=ACCESS_KEY,
                               secret_key=SECRET_KEY, region="eu-west-1", service="execute-api",
                               now=datetime.now(UTC))
        self.server.calls.append({"method": self.command, "path": self.path, "verdict": outcome.verdict.name,
                                  "body": body.decode(), "token": self.headers.get("X-Amz-Security-Token")})
        if outcome.verdict is not sigv4.Verdict.OK or self.server.forbid:
            self._answer(403, b'{"message":"Forbidden"}')
            return
        suffix = self.path.removeprefix(f"/admin/sellers/{SELLER}")
        answers: dict[tuple[str, str], dict[str, Any]] = {
            ("GET", ""): {"connections": [{"region": "NA", "status": "ACTIVE"}]},
            ("POST", "/deletion"): {"purge_after": "2026-12-19T12:00:00Z", "connections": 1},
            ("DELETE", "/deletion"): {"connections": 1},
            ("POST", "/tokens/removal"): {"connections": 1},
            ("PATCH", ""): json.loads(body or b"{}"),
            ("GET", "/key"): {"seller_key": "0" * 32},
            ("POST", "/backfill"): {"connections": 1, "cursors": 1, **json.loads(body or b"{}")},
            ("POST", "/export"): {"request_id": "req1", "status": "QUEUED", "objects_total": 2,
                                  "bytes_total": 1_200_000, "status_path": f"/admin/sellers/{SELLER}/export/req1"},
        }
        if (self.command, suffix) == ("GET", "/export/req1"):
            statuses = self.server.statuses
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
            answers[("GET", suffix)] = {"request_id": "req1", "objects_total": 2, "bytes_total": 1_200_000,
                                        "zip_bytes": 0, **status}
        answer = answers.get((self.command, suffix))
        if answer is None:
            self._answer(404, b'{"message":"No seller with this id."}')
        else:
            self._answer(202 if (self.command, suffix) == ("POST", "/export") else 200, json.dumps(answer).encode())

    do_GET = do_POST = do_DELETE = do_PATCH = _handle


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "SELLER_INSIGHTS_API"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setattr("ops.cli.POLL_SECONDS", 0)
    server = FakeApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(("argv", "method", "suffix"), [
    (["show"], "GET", ""), (["delete"], "POST", "/deletion"), (["undelete"], "DELETE", "/deletion"),
    (["remove-tokens"], "POST", "/tokens/removal"),
])
def test_each_command_sends_a_signed_request(api, argv, method, suffix):
    code, out, err = run(*argv, SELLER, "--api", api.url)
    assert code == 0, err
    assert api.calls == [{"method": method, "path": f"/admin/sellers/{SELLER}{suffix}", "verdict": "OK",
                          "body": "", "token": None}]
    json.loads(out)


def test_the_commands_call_exactly_the_declared_admin_routes(api, tmp_path):
    from data_requests.routes import ROUTES, route_suffix

    for argv in (["show"], ["delete"], ["undelete"], ["remove-tokens"], ["correct", "--email", "new@example.com"],
                 ["export", "--out", str(tmp_path / "export.zip")]):
        assert run(argv[0], SELLER, "--api", api.url, *argv[1:])[0] == 0, argv
    # The fleet's seller commands find the API from the stack (here: the local stack's URL).
    for argv in (["seller-key"], ["backfill", "--type", "GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE", "--since",
                                  "2026-11-01"]):
        assert run(argv[0], SELLER, "--local", api.url, *argv[1:])[0] == 0, argv
    called = {(call["method"], route_suffix(call["path"].removeprefix(f"/admin/sellers/{SELLER}"))[0])
              for call in api.calls}
    assert called == {(route.method, route.suffix) for route in ROUTES}


def test_correct_sends_the_fields_signed_and_the_api_from_the_environment(api, monkeypatch):
    monkeypatch.setenv("SELLER_INSIGHTS_API", api.url)
    code, out, _ = run("correct", SELLER, "--email", "new@example.com", "--name", "New Name")
    assert code == 0
    assert json.loads(out) == {"contact_email": "new@example.com", "contact_name": "New Name"}
    assert api.calls[0]["verdict"] == "OK" and api.calls[0]["method"] == "PATCH"
    assert run("correct", SELLER)[0] == 2


def test_session_credentials_are_signed_too(api, monkeypatch):
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-from-sts")
    assert run("show", SELLER, "--api", api.url)[0] == 0
    assert api.calls[0]["token"] == "session-token-from-sts" and api.calls[0]["verdict"] == "OK"


def test_missing_credentials_exit_2_with_a_clear_message(api, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    code, out, err = run("show", SELLER, "--api", api.url)
    assert code == 2 and out == ""
    assert "no AWS credentials found:" in err
    assert api.calls == []


def test_refused_credentials_exit_3_and_mention_mfa(api, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "a-wrong-secret-key-000000000000000000000")
    code, _, err = run("show", SELLER, "--api", api.url)
    assert code == 3
    assert "the API refused these credentials: the ops role requires MFA" in err
    assert "aws sts get-session-token --serial-number" in err and "--token-code" in err
    assert api.calls[0]["verdict"] == "INVALID"


def test_an_unknown_seller_exits_4_with_the_api_message(api):
    code, _, err = run("show", "A9NOBODYHERE1", "--api", api.url)
    assert code == 4 and "HTTP 404: No seller with this id." in err


def test_usage_errors_exit_2(api):
    assert run("show", "lowercase1", "--api", api.url)[0] == 2
    code, _, err = run("show", SELLER)
    assert code == 2 and "SELLER_INSIGHTS_API" in err
    assert run("show", SELLER, "--api", "ftp://example.com")[0] == 2


def test_export_downloads_with_progress_and_verifies_checksums(api, tmp_path):
    out_file = tmp_path / "export.zip"
    code, out, err = run("export", SELLER, "--api", api.url, "--out", str(out_file))
    assert code == 0, err
    result = json.loads(out)
    assert result == {"request_id": "req1", "file": str(out_file), "bytes": len(api.zip), "files": 3,
                      "verified": True}
    assert out_file.read_bytes() == api.zip
    # Requested, then polled until DONE with a progress line per change, then downloaded.
    polls = [call for call in api.calls if call["method"] == "GET"]
    assert [call["path"] for call in polls] == [f"/admin/sellers/{SELLER}/export/req1"] * 3
    assert "export requested: req1 (2 reports" in err
    assert "export QUEUED " in err and "0/2 reports" in err
    assert "export RUNNING" in err and " 50% 1/2 reports" in err
    assert "export DONE" in err and "100% 2/2 reports" in err
    assert "downloading [" in err
    assert SIGNATURE not in out + err and "/download/" not in out + err  # the URL is never printed
    assert api.drains == 0


def test_export_against_the_local_stack_drains_while_it_waits(api, tmp_path):
    code, _, err = run("export", SELLER, "--api", api.url, "--out", str(tmp_path / "e.zip"), "--drain")
    assert code == 0, err
    assert api.drains == 3  # before each status check


def test_a_failed_export_exits_6_with_its_reason(api, tmp_path):
    api.statuses = [{"status": "FAILED", "reason": "too_large"}]
    code, _, err = run("export", SELLER, "--api", api.url, "--out", str(tmp_path / "e.zip"))
    assert code == 6 and "the export failed (too_large)" in err
    assert not (tmp_path / "e.zip").exists()


def test_waiting_ends_after_wait_and_can_go_on_with_the_request_id(api, tmp_path):
    api.statuses = [{"status": "RUNNING", "objects_done": 1, "bytes_done": 600_000}]
    code, _, err = run("export", SELLER, "--api", api.url, "--out", str(tmp_path / "e.zip"), "--wait", "0")
    assert code == 6 and "run again with --request req1" in err
    api.statuses = [{"status": "DONE", "objects_done": 2, "bytes_done": 1_200_000,
                     "url": f"{api.url}/download/req1.zip?{SIGNATURE}"}]
    api.calls.clear()
    code, _, err = run("export", SELLER, "--api", api.url, "--out", str(tmp_path / "e.zip"), "--request", "req1")
    assert code == 0, err
    assert [call["method"] for call in api.calls] == ["GET"]  # no second export requested


def test_a_tampered_export_fails_verification(api, tmp_path):
    api.zip = export_zip(tamper=True)
    code, _, err = run("export", SELLER, "--api", api.url, "--out", str(tmp_path / "bad.zip"))
    assert code == 5 and "reports.csv does not match its sha256" in err


def test_the_default_output_file_is_named_after_the_seller(api, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("export", SELLER, "--api", api.url)[0] == 0
    assert Path(tmp_path / f"{SELLER}-export.zip").read_bytes() == api.zip


def test_python_dash_m_ops_runs(api):
    answer = subprocess.run([sys.executable, "-m", "ops", "show", SELLER, "--api", api.url],
                            capture_output=True, text=True, timeout=60, check=False,
                            cwd=Path(__file__).resolve().parents[2])
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["connections"][0]["status"] == "ACTIVE"
