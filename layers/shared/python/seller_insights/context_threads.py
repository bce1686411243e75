"""Background threads that see the context variables of the thread that started them."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable


def thread_in_this_context(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread that runs `target` in a copy of the calling thread's context: context variables
    the caller set (the identity a local IAM guard checks, say) hold in the thread's AWS calls too.
    A copy, not the context itself: one context cannot be entered by two threads at once."""
    context = contextvars.copy_context()
    return threading.Thread(target=context.run, args=(target,), name=name, daemon=True)
