"""Who may talk to ``dslrify serve``: Host allow-list, cross-site refusal, and protective headers.

* ``Host``: only the bound address, the loopback names and, when bound beyond loopback, this machine's
  hostname and interface addresses, plus ``--allow-host`` names. Anything else is a 400: a page on a
  rebound DNS name (DNS rebinding) cannot read the server's answers.
* Cross-site: a request whose ``Origin`` is not this server's, or whose ``Sec-Fetch-Site`` is neither
  ``same-origin`` nor ``none``, is a 403; so a web page the user visits cannot upload or enhance
  blind. A top-level navigation to the page itself (a link) stays allowed. Clients that send neither
  header (curl, scripts) are not browsers acting for another site and keep working.
* Every answer carries a Content-Security-Policy (own scripts, styles and images only; no framing),
  ``X-Content-Type-Options: nosniff`` and friends.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str:
    """The name part of a ``Host`` header or netloc, lower case, without port or IPv6 brackets."""
    try:
        return urlsplit(f"//{value.strip()}").hostname or ""
    except ValueError:  # "[::1" and the like: no name at all
        return ""


def allowed_hosts(host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` names this server answers to when bound to ``host`` (see the module docstring)."""
    names = {*LOOPBACK_NAMES, host_name(host), *(host_name(h) for h in extra)}
    if not is_loopback(host):
        names |= _machine_names()
    return frozenset(n for n in names if n)


def _machine_names() -> set[str]:
    """This machine's hostname, its full name and the addresses of its network interfaces."""
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    for name in list(names):
        with contextlib.suppress(OSError):  # a hostname that does not resolve: interfaces still count
            names |= {str(info[4][0]).split("%")[0] for info in socket.getaddrinfo(name, None)}
    names |= _interface_addresses()
    return names


def _interface_addresses() -> set[str]:
    """Local IPv4/IPv6 addresses from /proc (Linux); empty elsewhere, where the hostname must do."""
    found: set[str] = set()
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
        for before, line in zip(lines, lines[1:], strict=False):
            if "/32 host LOCAL" in line:
                found.add(before.split()[-1])
    except OSError:
        pass
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            hexa = line.split()[0]
            found.add(str(ipaddress.IPv6Address(int(hexa, 16))))
    except (OSError, ValueError, IndexError):
        pass
    return found


def refusal(method: str, path: str, headers: Headers, hosts: frozenset[str]) -> tuple[int, str, str] | None:
    """(status, error, advice) when the request must be refused, else None."""
    host = headers.get("host", "")
    if host_name(host) not in hosts:
        return (
            400,
            f"this server does not answer to the host name {host!r}",
            "open the page at the address dslrify serve printed, or start it with --allow-host NAME",
        )
    origin = headers.get("origin")
    if origin is not None and not _same_origin(origin, host):
        return 403, f"cross-site request from {origin} refused", "open the page from this server itself"
    site = headers.get("sec-fetch-site")
    navigation = method in ("GET", "HEAD") and headers.get("sec-fetch-mode") == "navigate" and path == "/"
    if site not in (None, "same-origin", "none") and not navigation:
        return 403, f"{site} request refused", "open the page from this server itself"
    return None


def _same_origin(origin: str, host: str) -> bool:
    """Whether ``origin`` (scheme://name[:port]) names the server reached through ``host``."""
    try:
        o, h = urlsplit(origin), urlsplit(f"//{host}")
        if o.scheme not in _DEFAULT_PORTS or not o.hostname:
            return False  # "null" (sandboxed frames, files) and other schemes are never this server
        default = _DEFAULT_PORTS[o.scheme]
        return (o.hostname, o.port or default) == (h.hostname, h.port or default)
    except ValueError:  # a port that is not a number
        return False


class Guard:
    """ASGI middleware: refuses what ``refusal`` names and adds ``SECURITY_HEADERS`` to every answer."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = refusal(scope["method"], scope["path"], Headers(scope=scope), self.hosts)
        if problem is not None:
            status, error, advice = problem
            answer = JSONResponse({"error": error, "advice": advice}, status, headers=SECURITY_HEADERS)
            await answer(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers.setdefault(key, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
