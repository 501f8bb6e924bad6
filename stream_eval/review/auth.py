"""Who is asking, and may they: the review app's authentication and authorisation.

Two ways to sign in (``review.auth``):

- ``password``: the built-in sign-in. Users and their roles are ``review.users``, each with
  an scrypt hash of their password (``stream-eval review hash-password``); a signed
  session cookie (Starlette's ``SessionMiddleware``, signed with ``review.session_key``
  from the environment) carries who signed in, their role and a CSRF token.
- ``proxy``: an authenticating reverse proxy names the user in ``review.user_header``.
  The header is believed only with proof that the request came through the proxy: the
  shared secret ``review.proxy_secret`` (environment only) in
  ``review.proxy_secret_header``, or a peer address in ``review.trusted_proxies``.
  Admins are ``review.admins``.

Roles: a ``reviewer`` reviews and labels; an ``admin`` may also erase. Every form carries
the session's CSRF token and a POST without it is refused; the cookie is ``HttpOnly``,
``SameSite=Strict`` and ``Secure`` (``review.cookie_secure``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

Role = Literal["reviewer", "admin"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64): what ``review.users`` keeps, never the password."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    n, r, p = _SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"]
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), dklen=32, n=int(n), r=int(r), p=int(p)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def proxy_user(
    request: Request,
    user_header: str,
    secret_header: str,
    secret: str,
    trusted: list[IPNetwork],
    admins: list[str],
) -> User | None:
    """The proxy's user, if the request proves it came through the proxy."""
    proven = False
    if secret:
        given = request.headers.get(secret_header, "")
        proven = hmac.compare_digest(given.encode(), secret.encode())
    if not proven and trusted and request.client is not None:
        try:
            peer = ipaddress.ip_address(request.client.host)
        except ValueError:
            peer = None
        proven = peer is not None and any(peer in net for net in trusted)
    name = request.headers.get(user_header, "").strip()[:256] if proven else ""
    if not name:
        return None
    return User(name, "admin" if name in admins else "reviewer")


def session_user(request: Request) -> User | None:
    name, role = request.session.get("user"), request.session.get("role")
    if not name or role not in ("reviewer", "admin"):
        return None
    return User(str(name), role)


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def csrf_ok(request: Request, given: str) -> bool:
    want = request.session.get("csrf", "")
    return bool(want) and hmac.compare_digest(str(want).encode(), given.encode())
