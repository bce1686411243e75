"""Server-rendered pages with autoescaping and the security headers every response carries.

Page texts come from this module only; no request value is ever echoed into a page.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.shared.cookies import Cookie

from seller_insights.marketplaces import MARKETPLACES

if TYPE_CHECKING:
    from jinja2 import Environment

_TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Link:
    href: str
    label: str


@cache
def _environment() -> Environment:
    # Imported on the first rendered page: redirects (most answers) never render one (bench.cold_import).
    from jinja2 import Environment, FileSystemLoader, select_autoescape  # noqa: PLC0415

    return Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=select_autoescape(default=True))


@cache
def _css() -> tuple[str, str]:
    css = (_TEMPLATES / "page.css").read_text().strip()
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    return css, f"'sha256-{digest}'"


def security_headers() -> dict[str, str]:
    _, style_hash = _css()
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "Referrer-Policy": "no-referrer",
        "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
        "Content-Security-Policy": (
            f"default-src 'none'; style-src {style_hash}; img-src 'none'; form-action 'none'; "
            "base-uri 'none'; frame-ancestors 'none'"
        ),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
    }


def page(
    status: int,
    heading: str,
    *paragraphs: str,
    action: Link | None = None,
    choices: list[Link] | None = None,
) -> Response[str]:
    css, _ = _css()
    body = _environment().get_template("base.html").render(
        heading=heading, paragraphs=paragraphs, action=action, choices=choices or [], css=css
    )
    return Response(status_code=status, body=body, headers=security_headers())


def redirect(location: str, status: int = 302, cookies: list[Cookie] | None = None) -> Response[str]:
    headers = security_headers()
    headers["Location"] = location
    return Response(status_code=status, body="", headers=headers, cookies=cookies)


def start_again(marketplace: str | None = None) -> Link:
    query = f"?marketplace={marketplace}" if marketplace in MARKETPLACES else ""
    return Link(f"connect{query}", "Start again")
