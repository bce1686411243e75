"""Where Amazon's URLs point. Deployed: Amazon itself. Local stage: the Amazon emulator.

The local stack sets AMAZON_ENDPOINT_OVERRIDE (allowed only when STAGE=local); then
`https://{host}{path}?{query}` becomes `{override}/_hosts/{host}{path}?{query}`, so the product builds
exactly the URLs it would build in AWS and only the origin changes.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def amazon_url(url: str, override: str | None) -> str:
    if not override:
        return url
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("only absolute https Amazon URLs can be redirected to the emulator")
    base = urlsplit(override.rstrip("/"))
    path = f"{base.path}/_hosts/{parts.hostname}{parts.path}"
    return urlunsplit((base.scheme, base.netloc, path, parts.query, ""))


def emulated_host(url: str, override: str | None) -> tuple[str, str] | None:
    """For a URL on the emulator's origin, the Amazon (host, path) it stands for; else None.

    Matching is exact on scheme, host and port of the override origin.
    """
    if not override:
        return None
    parts = urlsplit(url)
    base = urlsplit(override.rstrip("/"))
    if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
        return None
    prefix = f"{base.path}/_hosts/"
    if not parts.path.startswith(prefix):
        return None
    host, _, rest = parts.path[len(prefix):].partition("/")
    if not host:
        return None
    return host.lower(), "/" + rest
