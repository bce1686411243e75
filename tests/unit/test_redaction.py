import contextvars
import logging
import secrets
import threading

import pytest

from seller_insights import observability, redaction
from seller_insights.redaction import REDACTED, redact, register_secret


@pytest.mark.parametrize("text", [
    "token Atzr|IwEBIExampleRefreshToken0123456789abcdef",
    "token Atza%7CIwEBIExampleAccessToken0123456789abcdef",
    "grantless Atc|MQEWYExampleGrantless0123456789",
    "secret amzn1.oa2-cs.v1.3fa85f6457174562b3fc2c963f66afa6",
    "GET /callback?state=abcdef123456&spapi_oauth_code=ANxyzCODE123&selling_partner_id=A1",
    '{"refresh_token": "whatever-value", "client_secret": "s3cr3t-value"}',
    "{'access_token': 'whatever-value'}",
    # JSON quoted inside a JSON string (an upstream error body logged as a field)
    r'{"message": "exchange failed", "detail": "{\"code\": \"ANxyzCODE123\", \"error\": \"invalid_grant\"}"}',
    "https://bucket.s3.amazonaws.com/k?X-Amz-Signature=abc123&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F",
    "key AKIAIOSFODNN7EXAMPLE",
    "Authorization: Bearer abc.def.ghi",
])
def test_shaped_secrets_are_scrubbed(text):
    scrubbed = redact(text)
    assert REDACTED in scrubbed
    for secret in ("IwEBIExample", "MQEWYExample", "3fa85f6457", "abcdef123456", "ANxyzCODE123", "whatever-value",
                   "s3cr3t-value", "abc123", "AKIAIOSFODNN7EXAMPLE", "abc.def.ghi"):
        assert secret not in scrubbed


def test_registered_literals_are_scrubbed_wherever_they_appear():
    register_secret("k9Xq2ZpL0vR7sT4uW1yB3nM5cD8eF6gH")
    assert redact("the value k9Xq2ZpL0vR7sT4uW1yB3nM5cD8eF6gH leaked") == f"the value {REDACTED} leaked"


def test_short_values_are_not_registered():
    register_secret("abc")
    assert redact("abc abc") == "abc abc"


def test_harmless_text_is_unchanged():
    text = "seller connected region=EU first_connection=True"
    assert redact(text) == text


def test_powertools_logger_output_is_redacted(capfd):
    logger = observability.get_logger()
    logger.info("exchanging", extra={"url": "https://x/?code=ABCDEFGH1234&state=QWERTYUIOP12"})
    try:
        raise ValueError("boom Atzr|IwEBIExampleRefreshToken0123456789abcdef")
    except ValueError:
        logger.exception("failed")
    err = capfd.readouterr().err
    assert "ABCDEFGH1234" not in err and "QWERTYUIOP12" not in err and "IwEBIExample" not in err
    assert err.count(REDACTED) >= 3


def test_root_filter_redacts_standard_logging_records():
    token = "Atzr|IwEBIExampleToken0123456789"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "refresh %s\nforged", (token,), None)
    observability.RedactingFilter().filter(record)
    assert record.getMessage() == f"refresh {REDACTED}\\nforged"


def test_noisy_loggers_stay_at_warning_even_at_debug(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    for name in observability.NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    observability.pin_noisy_loggers()
    for name in observability.NOISY_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING


def test_log_guard_catches_a_leak(log_guard):
    assert log_guard.findings("refresh Atzr|IwEBIExampleRefreshToken0123456789abcdef") == ["LWA refresh token"]
    log_guard.watch("literal-fixture-secret-value")
    assert log_guard.findings("x literal-fixture-secret-value y") == ["a registered secret value"]
    assert log_guard.findings("nothing to see") == []


# --- literal values: invocation scopes, the bounded LRU, the matcher -----------------------------------


def _value(label: str) -> str:
    return f"{label}-{secrets.token_urlsafe(12)}"


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> redaction._LiteralRegistry:
    """A small registry in place of the process's: capacity 8, the tail lookup above 4 values."""
    small = redaction._LiteralRegistry(capacity=8, direct_limit=4)
    monkeypatch.setattr(redaction, "_registry", small)
    return small


def scrubbed(value: str) -> bool:
    return redact(f"before {value} after") == f"before {REDACTED} after"


def other_invocations(count: int) -> None:
    """`count` new values registered by a thread of its own (a fresh context: outside any scope)."""
    thread = threading.Thread(target=lambda: [register_secret(_value(f"other{n}")) for n in range(count)])
    thread.start()
    thread.join(timeout=30)


def test_outside_any_scope_values_age_out_of_the_bounded_lru(registry):
    first = _value("first")
    register_secret(first)
    assert scrubbed(first)
    for index in range(8):
        register_secret(_value(f"later{index}"))
    assert not scrubbed(first)  # the oldest of nine left the 8-value LRU
    assert registry.sizes() == (0, 8)


def test_a_value_registered_again_becomes_the_most_recent(registry):
    kept = _value("kept")
    register_secret(kept)
    for index in range(7):
        register_secret(_value(f"other{index}"))
        register_secret(kept)
    register_secret(_value("one-more"))
    assert scrubbed(kept)


def test_a_value_of_an_open_scope_is_never_evicted(registry):
    with redaction.scope():
        pinned = _value("pinned")
        register_secret(pinned)
        other_invocations(100)
        assert scrubbed(pinned)
        assert registry.sizes() == (1, 8)
    assert scrubbed(pinned)  # the scope ended: now the most recent value of the LRU
    other_invocations(8)
    assert not scrubbed(pinned)  # and it ages out like any other
    assert registry.sizes() == (0, 8)


def test_a_value_moves_from_the_lru_to_the_pins_and_back(registry):
    value = _value("both")
    register_secret(value)
    with redaction.scope():
        register_secret(value)
        assert registry.sizes() == (1, 0)
        other_invocations(20)
        assert scrubbed(value)
    assert registry.sizes() == (0, 8)
    assert scrubbed(value)


def test_a_nested_scope_joins_the_enclosing_one(registry):
    with redaction.scope():
        with redaction.scope():
            inner = _value("inner")
            register_secret(inner)
        other_invocations(20)
        assert scrubbed(inner)  # pinned until the outermost scope ends
    assert registry.sizes()[0] == 0


def test_two_open_scopes_holding_one_value_pin_it_until_both_end(registry):
    shared = _value("shared")
    outer_registered, release = threading.Event(), threading.Event()

    def other_invocation() -> None:
        with redaction.scope():
            register_secret(shared)
            outer_registered.set()
            release.wait(timeout=30)

    thread = threading.Thread(target=other_invocation)
    thread.start()
    assert outer_registered.wait(timeout=30)
    with redaction.scope():
        register_secret(shared)
    other_invocations(20)
    assert scrubbed(shared)  # the other invocation still holds it
    release.set()
    thread.join(timeout=30)
    assert registry.sizes()[0] == 0


def test_threads_in_a_copy_of_the_context_register_into_the_scope(registry):
    """report_stream's uploader thread runs in a copy of the caller's context: its values are the
    invocation's. A thread with a fresh context registers outside any scope."""
    copied, fresh = _value("copied"), _value("fresh")
    with redaction.scope():
        worker = threading.Thread(target=contextvars.copy_context().run, args=(register_secret, copied))
        plain = threading.Thread(target=register_secret, args=(fresh,))
        for thread in (worker, plain):
            thread.start()
            thread.join(timeout=30)
        other_invocations(8)
        assert scrubbed(copied)
        assert not scrubbed(fresh)


def test_a_thread_that_registers_after_its_scope_ended_uses_the_lru(registry):
    context_of_the_invocation = None
    with redaction.scope():
        context_of_the_invocation = contextvars.copy_context()
    late = _value("late")
    context_of_the_invocation.run(register_secret, late)
    assert scrubbed(late)
    assert registry.sizes() == (0, 1)


def test_the_decorator_scopes_each_invocation_and_releases_on_errors(registry):
    values: list[str] = []

    @redaction.invocation_scope
    def handler(event: dict[str, str], context: object) -> str:
        value = _value("handler")
        values.append(value)
        register_secret(value)
        other_invocations(20)
        assert scrubbed(value)
        if event.get("fail"):
            raise RuntimeError("handler failed")
        return "done"

    assert handler({}, None) == "done"
    assert handler.__name__ == "handler"
    with pytest.raises(RuntimeError):
        handler({"fail": "yes"}, None)
    assert registry.sizes()[0] == 0
    assert scrubbed(values[-1])  # released into the LRU as the most recent


def test_shaped_values_are_redacted_without_being_kept(registry):
    token = "Atza|" + secrets.token_urlsafe(40)
    register_secret(token, "amzn1.oa2-cs.v1." + secrets.token_hex(32))
    assert registry.sizes() == (0, 0)
    assert scrubbed(token)


def test_memory_stays_bounded_over_many_invocations(registry):
    for _ in range(2_000):
        with redaction.scope():
            register_secret(_value("a"), _value("b"), _value("c"))
            redact("a log line")
    assert registry.sizes() == (0, 8)
    assert len(registry.snapshot()) == 8


@pytest.mark.parametrize("direct_limit", [10_000, 0], ids=["direct scan", "tail lookup"])
def test_both_matchers_replace_longest_first_anywhere_in_long_text(direct_limit):
    short = "Q" * 4 + secrets.token_hex(6)
    longer = short + "-and-more"
    same_tail = "other" + short[-8:]
    straddling = _value("straddling")
    matcher = redaction._Matcher.of([short, longer, same_tail, straddling] + [_value("n") for _ in range(20)],
                                    direct_limit=direct_limit)
    filler = "x" * (redaction._WINDOW - 5)  # the straddling value crosses the first window's end
    text = f"{longer} {filler}{straddling} {same_tail} end {short}"
    assert matcher.scrub(text) == f"{REDACTED} {filler}{REDACTED} {REDACTED} end {REDACTED}"
    assert matcher.scrub(short[:-1]) == short[:-1]
    assert matcher.scrub("") == ""


def test_registering_and_redacting_from_many_threads(monkeypatch: pytest.MonkeyPatch):
    """Invocations in parallel threads (as the local stack runs them), each pinning its values and checking
    they stay redacted, while a reader redacts constantly and the matcher switches between its two forms."""
    shared = redaction._LiteralRegistry(capacity=64, direct_limit=32)
    monkeypatch.setattr(redaction, "_registry", shared)
    failures: list[str] = []
    stop = threading.Event()

    def invocations(worker: int) -> None:
        for round_ in range(150):
            with redaction.scope():
                mine = [_value(f"w{worker}r{round_}i{index}") for index in range(3)]
                register_secret(*mine)
                register_secret(_value("unscoped-looking"))
                for value in mine:
                    if not scrubbed(value):
                        failures.append(f"worker {worker} round {round_}")

    def reader() -> None:
        while not stop.is_set():
            redact("a log line with nothing secret in it " * 20)

    threads = [threading.Thread(target=invocations, args=(worker,)) for worker in range(6)]
    watcher = threading.Thread(target=reader)
    for thread in [*threads, watcher]:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stop.set()
    watcher.join(timeout=30)
    assert failures == []
    assert shared.sizes() == (0, 64)
