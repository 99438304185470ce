"""Validation of the host names and origins operators put in the configuration.

Shared by the ``trusted-hosts`` and ``cors-origins`` patches. Both compare a
browser's Host or Origin with these values *exactly*, so what we accept here
is the normalized form browsers send: lower-case ASCII (IDNA names in their
``xn--`` form), IPv6 addresses compressed, no trailing dot, no port on a host
name, no default port on an origin (the WHATWG URL standard's serialization
of an origin drops it). Anything else is refused with a message that says
what to write instead, rather than silently never matching.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import urllib.parse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

__all__ = ["parse_host", "parse_origin", "is_public_suffix", "DEFAULT_PORTS"]

_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
DEFAULT_PORTS = {"http": 80, "https": 443}


def _idna_hint(text: str) -> str:
    try:
        return f"; write it in its ASCII (IDNA) form, e.g. {text.encode('idna').decode('ascii')!r}"
    except UnicodeError:
        return ""


def _name(text: str, what: str) -> str:
    """A DNS name or an IP address, normalized; raises ValueError."""
    if not text.isascii():
        raise ValueError(
            f"{what} {text!r} is not ASCII; browsers send international names in their IDNA form{_idna_hint(text)}"
        )
    lowered = text.lower()
    if lowered.startswith("[") and lowered.endswith("]"):
        lowered = lowered[1:-1]
        if ":" not in lowered:
            raise ValueError(f"{what} {text!r}: only IPv6 addresses go in brackets")
    if ":" in lowered:
        try:
            addr = ipaddress.IPv6Address(lowered)
        except ValueError:
            raise ValueError(f"{what} {text!r} is neither a host name nor an IP address") from None
        if addr.scope_id:
            raise ValueError(f"{what} {text!r}: a zone index (%...) never appears in a Host or Origin header")
        return str(addr)
    if lowered.endswith("."):
        raise ValueError(
            f"{what} {text!r} ends with a dot; browsers send the name without it, write {lowered.rstrip('.')!r}"
        )
    labels = lowered.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels) or len(lowered) > 253:
        raise ValueError(
            f"{what} {text!r} is not a host name (letters, digits, '-' and '_' in dot-separated labels of 1-63 characters)"
        )
    if all(label.isdigit() for label in labels):
        try:
            return str(ipaddress.IPv4Address(lowered))
        except ValueError:
            raise ValueError(f"{what} {text!r} looks like an IPv4 address but is not one") from None
    return lowered


@functools.lru_cache(maxsize=1)
def _suffix_list() -> "PublicSuffixList":
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def is_public_suffix(name: str) -> bool:
    """Whether ``name`` is a public suffix (``co.uk``, ``github.io``, ``ts.net``): names below it have unrelated owners.

    Uses the Public Suffix List bundled with the ``publicsuffixlist``
    package (ICANN and private sections; no network), loaded only when a
    suffix entry is configured.
    """
    return bool(_suffix_list().is_public(name))


def parse_host(value: object, *, allow_suffix: bool = True) -> str:
    """Normalize one entry of ``[patches.trusted-hosts] hosts``.

    Args:
        value: from the TOML file: a host name (``"proxy.example"``), an IP
            address (``"100.64.0.5"``, ``"fd7a::1"`` or ``"[fd7a::1]"``), or,
            when ``allow_suffix``, a leading-dot suffix (``".tail1234.ts.net"``) that
            stands for every name below it.

    Returns:
        The lower-case name, the compressed IPv6 address without brackets,
        or the suffix with its leading dot.

    Raises:
        ValueError: not a string; a URL, a port, a wildcard (``*``,
            ``*.ts.net``), a trailing dot, non-ASCII, a suffix of a single
            label (``.net`` would trust a whole top-level domain), or a
            suffix that is itself a public suffix (``.co.uk``, ``.github.io``,
            ``.ts.net``; issue 13).
    """
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    text = value.strip()
    if not text:
        raise ValueError("an empty string is not a host name")
    if "://" in text:
        host = urllib.parse.urlsplit(text).hostname or "?"
        raise ValueError(f"{value!r} is a URL; list only the host name, e.g. {host!r}")
    if "*" in text:
        hint = (
            f"; to trust every name below a domain write a leading dot, e.g. {text.lstrip('*') or '.example.com'!r}"
            if allow_suffix
            else ""
        )
        raise ValueError(f"{value!r}: wildcards are not accepted{hint}")
    if "@" in text or "/" in text or any(c.isspace() for c in text):
        raise ValueError(f"{value!r} is not a host name")
    if text.startswith("."):
        if not allow_suffix:
            raise ValueError(f"{value!r}: a leading-dot suffix is not accepted here")
        rest = _name(text[1:], "suffix")
        if ":" in rest or rest.replace(".", "").isdigit():
            raise ValueError(f"{value!r}: a suffix must be a domain name, not an address")
        if "." not in rest:
            raise ValueError(
                f"{value!r} would trust every name under a top-level domain; write a longer suffix (e.g. '.your-tailnet.ts.net') or exact names"
            )
        if is_public_suffix(rest):
            raise ValueError(
                f"{value!r} is a public suffix (on the Public Suffix List): the names below it belong to unrelated "
                "owners, any of whom could point one at 127.0.0.1; list exact names, or a suffix only you control "
                "(e.g. '.your-tailnet.ts.net')"
            )
        return "." + rest
    if text.count(":") == 1 and not text.startswith("["):
        name, port = text.split(":")
        raise ValueError(f"{value!r}: ports are ignored when comparing hosts, write {name.lower()!r}")
    if text.startswith("[") and "]:" in text:
        raise ValueError(f"{value!r}: ports are ignored when comparing hosts, write {text.split(']:')[0] + ']'!r}")
    return _name(text, "host")


def parse_origin(value: object) -> str:
    """Normalize one entry of ``[patches.cors-origins] origins``.

    Args:
        value: from the TOML file: ``scheme://host`` or ``scheme://host:port``
            with scheme ``http`` or ``https`` (``"https://proxy.example"``,
            ``"http://[fd7a::1]:8080"``).

    Returns:
        The origin as a browser serializes it: lower-case, IPv6 compressed
        in brackets, the port only when it is not the scheme's default.

    Raises:
        ValueError: not a string, ``*``, ``null``, another scheme, a path,
            query, fragment or user name, a default port written out, or a
            host that :func:`parse_host` refuses.
    """
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    text = value.strip()
    if text == "*":
        raise ValueError(
            "'*' would let every web site read the dashboard's API; list each origin, e.g. \"https://proxy.example\""
        )
    if text.lower() == "null":
        raise ValueError(
            "'null' is the origin of sandboxed frames and local files, which any page can produce; it is never accepted"
        )
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an origin ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.netloc:
        raise ValueError(
            f'{value!r} is not an origin; write scheme://host[:port] with scheme http or https, e.g. "https://proxy.example"'
        )
    if "@" in parts.netloc:
        raise ValueError(f"{value!r}: an origin has no user name or password")
    if parts.path or parts.query or parts.fragment or text.endswith(("?", "#")):
        bare = f"{scheme}://{parts.netloc.lower()}"
        raise ValueError(f"{value!r}: an origin has no path, query or fragment; write {bare!r}")
    netloc = parts.netloc
    host_text = (
        netloc[: netloc.rindex("]") + 1]
        if netloc.startswith("[")
        else netloc.rsplit(":", 1)[0]
        if port is not None
        else netloc
    )
    if "*" in host_text:
        raise ValueError(f"{value!r}: wildcards are not accepted; list each origin")
    if host_text.startswith("."):
        raise ValueError(f"{value!r} is not an origin")
    host = _name(host_text, "origin host")
    shown = f"[{host}]" if ":" in host else host
    if port is not None and port == DEFAULT_PORTS[scheme]:
        raise ValueError(
            f"{value!r}: browsers leave out the default port {port} of {scheme}, write {scheme + '://' + shown!r}"
        )
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{value!r}: port {port} is out of range")
    return f"{scheme}://{shown}" + (f":{port}" if port is not None else "")
