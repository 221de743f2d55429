"""Ollama's host, read as the `ollama` client reads it, and refused where that client would
misread it.

Kept apart from the HTTP stack: `import ollama` itself reads `OLLAMA_HOST` (it builds a
module-level client) and raises a bare `ValueError` on a bad port, so the CLI checks the host
with this module before anything imports `ollama`.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

__all__ = ["HOST_FORMS", "parse_host"]

HOST_FORMS = "host, host:port, :port or http(s)://host[:port][/path] (e.g. localhost:11434)"
"""The host forms `parse_host` accepts, for messages."""

_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")


def parse_host(host: str | None) -> str:
    """Resolve an Ollama host exactly as the `ollama` client does (`_parse_host`), or raise
    `ValueError` (one line naming the value and `HOST_FORMS`) for one it would misread.

    None or "" → `http://127.0.0.1:11434`; a bare host gets port 11434; `http://h` port 80;
    `https://h` port 443; IPv6 addresses are bracketed; a path is kept, without a final `/`.
    The client accepts anything and fails later with a misleading error (a port that is not a
    number is a traceback, `12011` "not a canonical IPv4 address", `ftp://` or an `/api`
    suffix an unexpected answer), so those are refused here, where the host enters.
    """
    text, port = host or "", 11434
    scheme, _, hostport = text.partition("://")
    if not hostport:
        scheme, hostport = "http", text
    elif scheme == "http":
        port = 80
    elif scheme == "https":
        port = 443

    def bad(why: str) -> ValueError:
        return ValueError(f"invalid Ollama host {text!r}: {why}; write {HOST_FORMS}")

    if scheme not in ("http", "https"):
        raise bad(f"the scheme is {scheme or '(empty)'}://, not http:// or https://")
    if any(c.isspace() for c in text):
        raise bad("it contains a space")
    split = urllib.parse.urlsplit(f"{scheme}://{hostport}")
    try:
        given_port = split.port
    except ValueError:
        raise bad("the port is not a number from 1 to 65535") from None
    if given_port == 0:
        raise bad("the port is not a number from 1 to 65535")
    if split.username is not None or split.query or split.fragment:
        raise bad("only a scheme, a host, a port and a path may be given")
    name = split.hostname or "127.0.0.1"
    port = given_port or port
    try:
        if isinstance(ipaddress.ip_address(name), ipaddress.IPv6Address):
            name = f"[{name}]"
    except ValueError:
        if not _HOST_NAME.fullmatch(name):
            raise bad(f"{name!r} is not a host name") from None
        if name.replace(".", "").isdigit():
            hint = f" (a port alone is written :{name})" if name.isdigit() else ""
            raise bad(f"{name!r} is neither a host name nor an IPv4 address{hint}") from None
    path = split.path.strip("/")
    if path == "api" or path.endswith("/api"):
        raise bad("leave out the /api suffix (the client adds /api/... itself)")
    if path:
        return f"{scheme}://{name}:{port}/{path}"
    return f"{scheme}://{name}:{port}"
