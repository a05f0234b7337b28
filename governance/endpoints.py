"""Model endpoints a submitter supplies reach only what the institution allows (no server-side request forgery).

An endpoint URL from the web form or the API is checked when it is submitted and again when the audit connects:
its scheme and port must be allowed, and every address its host resolves to must be a public address, or one
the administrator allowed (setting ``endpoint_allow_networks`` / ``endpoint_allow_hosts``). By default
loopback, private, link-local, shared (CGNAT), multicast, reserved and unspecified addresses are refused,
which covers cloud metadata services (169.254.169.254, fd00:ec2::254). The host is resolved once per check and
the audit connects to the checked address (no DNS rebinding between the check and the connection); redirects
are never followed. Audits an operator starts from the command line are the operator's choice and are not
checked; the demo endpoints (``demo://…``) are not network addresses.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import GovernanceError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

#: Ranges no submitter may reach unless the administrator allows them, with the words a refusal uses.
BLOCKED: tuple[tuple[Network, str], ...] = tuple((ipaddress.ip_network(cidr), why) for cidr, why in (
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
    ("127.0.0.0/8", "a loopback address (this server itself)"),
    ("169.254.0.0/16", "a link-local address (including cloud metadata services)"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "an IETF protocol assignment"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address (this server itself)"),
    ("::ffff:0:0/96", "an IPv4-mapped address"),
    ("64:ff9b::/96", "a NAT64 address"),
    ("fc00::/7", "a private (unique local) address, including cloud metadata services"),
    ("fe80::/10", "a link-local address"),
    ("ff00::/8", "a multicast address"),
))
SCHEMES = ("http", "https")


class EndpointRefused(GovernanceError):
    """A submitted endpoint the institution does not allow: the message says why and who can allow it."""


@dataclass(frozen=True)
class EndpointPolicy:
    """What an administrator allows beyond public addresses (settings ``endpoint_allow_*``)."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()
    #: Empty: any port.
    ports: frozenset[int] = frozenset()
    schemes: tuple[str, ...] = SCHEMES

    @classmethod
    def from_settings(cls, settings) -> EndpointPolicy:
        return cls(networks=tuple(ipaddress.ip_network(n, strict=False) for n in settings.endpoint_allow_networks),
                   hosts=frozenset(h.lower().rstrip(".") for h in settings.endpoint_allow_hosts),
                   ports=frozenset(settings.endpoint_allow_ports))


@dataclass(frozen=True)
class CheckedEndpoint:
    """An endpoint that passed the check, with the address the audit must connect to."""

    url: str
    scheme: str
    host: str
    port: int
    address: str

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (also the numeric forms inet_aton accepts, such as ``2130706433``)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise EndpointRefused(f"the endpoint's host '{host}' cannot be resolved ({exc})") from None
    return list(dict.fromkeys(entry[4][0].split("%", 1)[0] for entry in found))


def _blocked_reason(address: Address) -> str | None:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        return _blocked_reason(mapped) or None
    for network, why in BLOCKED:
        if address.version == network.version and address in network:
            return why
    return None


def check(url: str, policy: EndpointPolicy, resolve: Resolver = system_resolver) -> CheckedEndpoint:
    """The endpoint if the institution allows it; :class:`EndpointRefused` (saying why and who can allow it)
    otherwise."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise EndpointRefused(f"the endpoint is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in policy.schemes:
        raise EndpointRefused(f"the endpoint's scheme '{scheme or '(none)'}' is not allowed (use "
                              f"{' or '.join(policy.schemes)})")
    if parts.username or parts.password:
        raise EndpointRefused("the endpoint must not carry credentials in its URL (the audit sends the API key "
                              "from the server's environment)")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise EndpointRefused("the endpoint has no host")
    port = port or (443 if scheme == "https" else 80)
    if policy.ports and port not in policy.ports:
        raise EndpointRefused(f"port {port} is not an allowed endpoint port ({', '.join(map(str, sorted(policy.ports)))}"
                              f"); an administrator can allow it (setting endpoint_allow_ports)")
    addresses = resolve(host, port)
    if not addresses:
        raise EndpointRefused(f"the endpoint's host '{host}' resolves to no address")
    for text in addresses:
        address = ipaddress.ip_address(text)
        if host in policy.hosts or any(address.version == n.version and address in n for n in policy.networks):
            continue
        why = _blocked_reason(address)
        if why:
            shown = host if host == text else f"{host} ({text})"
            raise EndpointRefused(
                f"the endpoint {shown} is {why}: model endpoints must be addresses the institution allows. An "
                f"administrator can allow it (setting endpoint_allow_hosts or endpoint_allow_networks)")
    return CheckedEndpoint(url=url.strip(), scheme=scheme, host=host, port=port, address=addresses[0])


def is_network_endpoint(endpoint: str) -> bool:
    return "://" in endpoint and not endpoint.strip().lower().startswith("demo://")


def check_submitted(endpoint: str, settings, resolve: Resolver = system_resolver) -> None:
    """A submitter's endpoint: a network address the institution allows, a model folder under one of the
    instance's ``model_roots``, or (in demo mode) a demo endpoint."""
    text = endpoint.strip()
    if text.lower().startswith("demo://"):
        if not settings.demo_mode:
            raise EndpointRefused("demo endpoints are only for demo mode")
        return
    if is_network_endpoint(text):
        check(text, EndpointPolicy.from_settings(settings), resolve)
        return
    folder = Path(text).expanduser()
    if not folder.is_absolute():
        raise EndpointRefused("the endpoint must be an http(s) URL or the absolute path of a model folder")
    resolved = folder.resolve()
    roots = [Path(root).expanduser().resolve() for root in settings.model_roots]
    if not any(resolved.is_relative_to(root) for root in roots):
        raise EndpointRefused(f"the model folder {text} is not inside a folder this instance serves models from"
                              f" ({', '.join(map(str, roots)) or 'none configured'}); an administrator can add one "
                              f"(setting model_roots)")
