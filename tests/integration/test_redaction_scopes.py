"""Registered secrets stay redacted for as long as their invocation may log them, however many other
invocations a warm container serves meanwhile; outside any invocation they age out of the bounded LRU as
before. Driven through the real consent handler: every `/connect` registers a new OAuth state and binding
cookie (two values), so 2,200 calls register 4,400, more than twice the LRU's capacity.
"""

from __future__ import annotations

import secrets
import threading

from seller_insights import redaction
from seller_insights.observability import get_logger
from seller_insights.redaction import LRU_CAPACITY, REDACTED, redact, register_secret
from tests.support.api import ConsentClient

CONNECTS = 2_200
WAIT_SECONDS = 600  # a bound for the helper thread, never reached when the test works


def test_a_value_of_an_open_invocation_stays_redacted_through_2200_connects(consent_env, capfd, log_guard):
    pinned = f"pinned-{secrets.token_urlsafe(24)}"
    unscoped = f"unscoped-{secrets.token_urlsafe(24)}"
    register_secret(unscoped)  # the test's own thread: outside any invocation scope
    registered, go_on, logged = threading.Event(), threading.Event(), threading.Event()

    def long_invocation() -> None:
        """An invocation (as the local stack runs one, in a thread) that registers a value early and logs
        it late, after the container has served thousands of other requests."""

        @redaction.invocation_scope
        def handler(event: dict[str, str], context: object) -> None:
            register_secret(pinned)
            registered.set()
            go_on.wait(timeout=WAIT_SECONDS)
            get_logger().warning("still working on it", extra={"detail": f"with {pinned} inside"})
            logged.set()

        handler({}, None)

    invocation = threading.Thread(target=long_invocation)
    invocation.start()
    assert registered.wait(timeout=WAIT_SECONDS)

    for _ in range(CONNECTS):  # a new browser each time: a new state and a new binding cookie
        assert ConsentClient().get("/connect?marketplace=US").status == 302

    assert redact(f"x {pinned} y") == f"x {REDACTED} y"
    assert redaction._registry.sizes() == (1, LRU_CAPACITY)  # bounded: only the open invocation's value is extra
    assert unscoped in redact(f"x {unscoped} y")  # outside any scope: aged out of the LRU, as before
    go_on.set()
    invocation.join(timeout=WAIT_SECONDS)
    assert logged.is_set()
    out, err = capfd.readouterr()
    assert log_guard.findings(out + err) == []  # what this test read, the guard would not see
    (line,) = [line for line in err.splitlines() if "still working on it" in line]
    assert f"with {REDACTED} inside" in line and pinned not in line
    assert redaction._registry.sizes() == (0, LRU_CAPACITY)
    assert redact(f"x {pinned} y") == f"x {REDACTED} y"  # now the most recent value of the LRU
