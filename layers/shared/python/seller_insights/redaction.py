"""Scrubs secrets out of any text bound for a log, trace or error message.

Two layers: patterns for everything with a recognisable shape (LWA tokens, client secrets, OAuth
parameters in URLs or JSON, presigned-URL signatures, AWS keys), and a registry of literal values
that have no shape of their own (our state values, binding cookies, authorization codes, amazon_state,
presigned URLs) which the code registers the moment it sees them.

Lifetimes of registered values:
- Inside an invocation scope (`scope()`, or `@invocation_scope` on a Lambda handler) a registered value is
  pinned until the scope ends: however many values other invocations of the container register
  meanwhile, it stays redacted while its invocation may still log it. Threads that run in a copy of the
  invocation's context (`contextvars.copy_context().run`) register into the same scope; a plain thread
  has an empty context and registers outside any scope.
- Outside any scope, and once its scope has ended, a value lives in a bounded LRU (`LRU_CAPACITY`), so a
  warm container that serves many invocations keeps bounded memory.
- A value that a shape pattern already scrubs whole (an LWA token, a client secret) is not kept at all.

`redact` runs on every log line, so it never sorts or copies the registry: it uses a matcher that is
replaced only when the set of values changes. Up to `DIRECT_SCAN_LIMIT` values the matcher holds them
longest first and checks each; above, it holds an index by each value's last 8 characters, finds with one
C-level set intersection which of those occur in the line (usually none) and checks only their values.
bench/redaction.py measures both.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

REDACTED = "[REDACTED]"

_SENSITIVE_PARAMS = (
    "spapi_oauth_code|code|state|amazon_state|client_secret|refresh_token|access_token|"
    "newClientSecret|new_client_secret|client_assertion|password|X-Amz-Signature|"
    "X-Amz-Credential|X-Amz-Security-Token|Signature|restrictedDataToken"
)
# Shapes replaced whole: a registered value that one of them matches entirely needs no literal entry,
# because every character of it is inside the shape's class wherever it appears.
_WHOLE_VALUE_SHAPES: tuple[re.Pattern[str], ...] = (
    # LWA refresh (Atzr|), access (Atza|) and grantless (Atc|) tokens, raw or URL-encoded.
    re.compile(r"Atz[ar](?:\||%7C)[^\s\"'&,;<>]+", re.IGNORECASE),
    re.compile(r"Atc(?:\||%7C)[^\s\"'&,;<>]+", re.IGNORECASE),
    re.compile(r"amzn1\.oa2-cs\.v1\.[0-9A-Za-z]+"),
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    *((shape, REDACTED) for shape in _WHOLE_VALUE_SHAPES),
    # key=value in query strings and form bodies
    (re.compile(rf"(?i)\b({_SENSITIVE_PARAMS})=[^&\s\"'<>]*"), rf"\1={REDACTED}"),
    # "key": "value" in JSON
    (re.compile(rf"(?i)\"({_SENSITIVE_PARAMS})\"\s*:\s*\"[^\"]*\""), rf'"\1": "{REDACTED}"'),
    # \"key\": \"value\" in JSON nested inside a JSON string (an error body quoted in a log field)
    (re.compile(rf"(?i)\\\"({_SENSITIVE_PARAMS})\\\"\s*:\s*\\\".*?\\\""), rf'\\"\1\\": \\"{REDACTED}\\"'),
    # 'key': 'value' in Python reprs
    (re.compile(rf"(?i)'({_SENSITIVE_PARAMS})'\s*:\s*'[^']*'"), rf"'\1': '{REDACTED}'"),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"(?i)(authorization|x-amz-access-token|cookie|set-cookie)(\"?\s*[:=]\s*\"?)[^\"\n]+"),
     rf"\1\2{REDACTED}"),
)

_MIN_LITERAL = 8  # shorter values are not registered (too likely to match ordinary text)
LRU_CAPACITY = 2048
# Up to this many values a line is searched for each of them (C-speed `in`); above it, the tails are
# looked up first. The crossover measured by bench/redaction.py is between 256 and 512 values.
DIRECT_SCAN_LIMIT = 256
# Text is cut into windows of this many start positions for the tail lookup (the slices are reused).
_WINDOW = 4096


@functools.cache
def _key_slices() -> tuple[slice, ...]:
    """Every 8-character slice of a window, made once (on the first lookup, not at import)."""
    return tuple(slice(start, start + _MIN_LITERAL) for start in range(_WINDOW))


def _tail(value: str) -> str:
    """A value's lookup key: its last 8 characters. Any 8 of its characters would do (if the value is in
    a text, so is each of its substrings); the tail is where presigned URLs are random (the signature),
    while their heads are all alike."""
    return value[-_MIN_LITERAL:]


class _Matcher:
    """An immutable view of the registered values at one version, ready to scrub text: either all of them
    longest first (scanned one by one), or an index tail -> values (only the candidates are scanned)."""

    def __init__(self, version: int, *, longest_first: tuple[str, ...] = (),
                 by_tail: dict[str, tuple[str, ...]] | None = None) -> None:
        self.version = version
        self._longest_first = longest_first
        self._by_tail = by_tail

    @classmethod
    def of(cls, values: Iterable[str], version: int = 0, direct_limit: int = DIRECT_SCAN_LIMIT) -> _Matcher:
        """A matcher built from scratch (the registry keeps its tail index up to date instead)."""
        ordered = tuple(sorted(values, key=len, reverse=True))
        if len(ordered) <= direct_limit:
            return cls(version, longest_first=ordered)
        by_tail: dict[str, tuple[str, ...]] = {}
        for value in ordered:
            by_tail[_tail(value)] = (*by_tail.get(_tail(value), ()), value)
        return cls(version, by_tail=by_tail)

    def scrub(self, text: str) -> str:
        candidates: Iterable[str] = self._longest_first
        if self._by_tail is not None:
            tails = self._tails_in(self._by_tail, text)
            if not tails:
                return text
            by_tail = self._by_tail
            candidates = sorted(itertools.chain.from_iterable(by_tail[tail] for tail in tails), key=len, reverse=True)
        for value in candidates:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    @staticmethod
    def _tails_in(by_tail: dict[str, tuple[str, ...]], text: str) -> set[str]:
        """The registered tails that occur in the text: every 8-character slice, looked up in C."""
        starts = len(text) - _MIN_LITERAL + 1
        found: set[str] = set()
        every = _key_slices()
        for offset in range(0, max(starts, 0), _WINDOW):
            window = text[offset:offset + _WINDOW + _MIN_LITERAL - 1]
            count = min(_WINDOW, starts - offset)
            slices = every if count == _WINDOW else itertools.islice(every, count)
            found |= by_tail.keys() & map(window.__getitem__, slices)
        return found

    def values(self) -> list[str]:
        if self._by_tail is None:
            return list(self._longest_first)
        return sorted(itertools.chain.from_iterable(self._by_tail.values()), key=len, reverse=True)


class _Scope:
    """The values one invocation registered, pinned until it ends."""

    __slots__ = ("open", "values")

    def __init__(self) -> None:
        self.values: dict[str, None] = {}  # in registration order, the order they enter the LRU in
        self.open = True


_current_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar(
    "seller_insights_redaction_scope", default=None)


class _LiteralRegistry:
    """Thread-safe registry of literal secret values: pinned ones (held by open scopes, counted) and a
    bounded LRU of the rest; a value is in exactly one of the two. A tail index of all of them is kept up
    to date as values come and go, so a new matcher costs a dictionary copy, not a sort."""

    def __init__(self, capacity: int = LRU_CAPACITY, direct_limit: int = DIRECT_SCAN_LIMIT) -> None:
        self._lock = threading.Lock()
        self._capacity = capacity
        self._direct_limit = direct_limit
        self._pinned: dict[str, int] = {}  # value -> how many open scopes hold it
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._by_tail: dict[str, tuple[str, ...]] = {}
        self._version = 0
        self._matcher = _Matcher(0)

    def add(self, value: str) -> None:
        if len(value) < _MIN_LITERAL or any(shape.fullmatch(value) for shape in _WHOLE_VALUE_SHAPES):
            return
        scope = _current_scope.get()
        with self._lock:
            if scope is not None and scope.open:
                if value in scope.values:
                    return
                scope.values[value] = None
                holders = self._pinned.get(value, 0)
                self._pinned[value] = holders + 1
                if holders == 0:
                    if value in self._recent:
                        del self._recent[value]  # from the LRU to the pins: the set of values is the same
                    else:
                        self._index(value)
                return
            if value in self._pinned:
                return  # an open scope holds it; it enters the LRU when the last one ends
            if value in self._recent:
                self._recent.move_to_end(value)
                return
            self._recent[value] = None
            self._index(value)
            self._trim()

    def release(self, scope: _Scope) -> None:
        """The scope ended: its values go to the LRU as the most recent ones, and may age out from there."""
        with self._lock:
            scope.open = False
            for value in scope.values:
                holders = self._pinned[value] - 1
                if holders:
                    self._pinned[value] = holders
                else:
                    del self._pinned[value]
                    self._recent[value] = None
            scope.values = {}
            self._trim()

    def _index(self, value: str) -> None:
        tail = _tail(value)
        self._by_tail[tail] = (*self._by_tail.get(tail, ()), value)
        self._version += 1

    def _trim(self) -> None:
        while len(self._recent) > self._capacity:
            value, _ = self._recent.popitem(last=False)
            tail = _tail(value)
            rest = tuple(other for other in self._by_tail[tail] if other != value)
            if rest:
                self._by_tail[tail] = rest
            else:
                del self._by_tail[tail]
            self._version += 1

    def matcher(self) -> _Matcher:
        matcher = self._matcher
        if matcher.version == self._version:
            return matcher
        with self._lock:
            if self._matcher.version != self._version:
                if len(self._pinned) + len(self._recent) <= self._direct_limit:
                    ordered = tuple(sorted(itertools.chain(self._pinned, self._recent), key=len, reverse=True))
                    self._matcher = _Matcher(self._version, longest_first=ordered)
                else:
                    self._matcher = _Matcher(self._version, by_tail=dict(self._by_tail))
            return self._matcher

    def snapshot(self) -> list[str]:
        """Every value registered now, longest first (the test suite's log guard reads it)."""
        return self.matcher().values()

    def sizes(self) -> tuple[int, int]:
        """(pinned, in the LRU): what the registry holds."""
        with self._lock:
            return len(self._pinned), len(self._recent)


_registry = _LiteralRegistry()


def register_secret(*values: str | None) -> None:
    """Never let these exact values reach a log line (pinned for the current invocation scope, if any)."""
    for value in values:
        if value:
            _registry.add(value)


@contextmanager
def scope() -> Iterator[None]:
    """Pins every value registered inside (this thread, and threads run in a copy of its context) until
    the block ends. Inside an open scope, a nested one joins it: its values stay pinned until the
    outermost ends."""
    enclosing = _current_scope.get()
    if enclosing is not None and enclosing.open:
        yield
        return
    opened = _Scope()
    token = _current_scope.set(opened)
    try:
        yield
    finally:
        _current_scope.reset(token)
        _registry.release(opened)


def invocation_scope[**P, R](handler: Callable[P, R]) -> Callable[P, R]:
    """Decorates a Lambda handler: one `scope()` per invocation (put it above Powertools' decorators)."""

    @functools.wraps(handler)
    def invoke(*args: P.args, **kwargs: P.kwargs) -> R:
        with scope():
            return handler(*args, **kwargs)

    return invoke


def redact(text: str) -> str:
    text = _registry.matcher().scrub(text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
