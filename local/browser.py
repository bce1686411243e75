"""A `requests` session that keeps cookies the way a browser does on loopback.

The product sets its consent cookie `Secure` (it runs behind HTTPS in AWS). Browsers treat
http://127.0.0.1 and http://localhost as potentially trustworthy origins and send such cookies there;
Python's cookie jar sends them over https only. This policy closes that gap, for loopback only.
"""

from __future__ import annotations

from http.cookiejar import Cookie, DefaultCookiePolicy
from typing import Any
from urllib.parse import urlsplit

import requests

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class _LoopbackPolicy(DefaultCookiePolicy):
    def return_ok_secure(self, cookie: Cookie, request: Any) -> bool:
        if cookie.secure and urlsplit(request.get_full_url()).hostname in _LOOPBACK:
            return True
        return bool(super().return_ok_secure(cookie, request))


class _BrowserSession(requests.Session):
    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        prepared = super().prepare_request(request)
        # requests copies the jar into a fresh one with the default policy for each request; pick the
        # cookies again from the session's own jar, with its policy.
        prepared.headers.pop("Cookie", None)
        prepared.prepare_cookies(self.cookies)
        return prepared


def browser_session() -> requests.Session:
    session = _BrowserSession()
    session.cookies.set_policy(_LoopbackPolicy())
    return session
