"""Where a server message goes, and whether we may send it there.

``resolve_targets`` picks the delivery targets in Vapi's order: the tool's ``server`` (``tool-calls``
only), then ``assistant.server``, then ``phoneNumber.server`` — first match wins among those — and then
every enabled ``/webhook-endpoint`` whose scope and events match (ours: account-wide, or scoped to the
assistant, phone number or tool). Synchronous messages (``tool-calls``, ``assistant-request``, …) go to
exactly one target: the first in that order.

``check_url`` is the outbound URL policy: http/https only, an explicit deny list, an explicit allow list,
then the built-in denials (link-local, cloud metadata, non-unicast) and, optionally, private ranges. Name
resolution is passed in, and every address it returns must pass. Pure: no sockets here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from esl_controller.webhooks.messages import SYNCHRONOUS_TYPES, wanted

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``resolve(host, port) -> addresses`` (strings); raises OSError when the name does not resolve
Resolver = Callable[[str, int], Sequence[str]]

DEFAULT_TIMEOUT_SECONDS = 20.0


# ------------------------------------------------------------------------------------------ targets


@dataclass(frozen=True)
class Target:
    """One place to POST a message to. ``source``: tool, assistant, phone-number or endpoint."""

    url: str
    source: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    credential_id: str | None = None
    #: the WebhookEndpoint id when ``source == "endpoint"``
    endpoint_id: str | None = None
    #: account / assistant / phone-number / tool, for endpoints
    scope: str | None = None
    #: legacy ``server.secret`` (sent as X-Vapi-Secret); never printed
    secret: str | None = field(default=None, repr=False)

    def header_dict(self) -> dict[str, str]:
        return dict(self.headers)


def target_from_server(server: Mapping[str, Any] | None, source: str) -> Target | None:
    """A Target from a Vapi ``server`` object ``{url, timeoutSeconds, headers, credentialId, secret}``."""
    if not server or not server.get("url"):
        return None
    headers = server.get("headers") or {}
    return Target(
        url=str(server["url"]),
        source=source,
        headers=tuple((str(k), str(v)) for k, v in headers.items()),
        timeout_seconds=float(server.get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS),
        credential_id=server.get("credentialId"),
        secret=server.get("secret"),
    )


def _server_of(resource: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """``resource.server``, or the legacy ``serverUrl`` / ``serverUrlSecret`` pair."""
    if not resource:
        return None
    if resource.get("server"):
        return resource["server"]
    if resource.get("serverUrl"):
        return {"url": resource["serverUrl"], "secret": resource.get("serverUrlSecret")}
    return None


_SCOPE_ORDER = {"tool": 0, "assistant": 1, "phone-number": 2, "account": 3}


def _endpoint_matches(
    endpoint: Mapping[str, Any],
    message_type: str,
    server_messages: Sequence[str] | None,
    ids: Mapping[str, str | None],
    transcript_type: str | None,
) -> bool:
    if not endpoint.get("enabled", True) or not endpoint.get("url"):
        return False
    scope = endpoint.get("scope") or "account"
    if scope not in _SCOPE_ORDER:
        return False
    if scope != "account":
        if not endpoint.get("scopeId") or endpoint.get("scopeId") != ids.get(scope):
            return False
        if scope == "tool" and message_type != "tool-calls":
            return False
    events = endpoint.get("events") or ()
    if events:
        if message_type == "transcript":
            return "transcript" in events or (
                transcript_type == "final" and 'transcript[transcriptType="final"]' in events
            )
        return message_type in events
    return wanted(message_type, server_messages, transcript_type=transcript_type)


def resolve_targets(
    message_type: str,
    *,
    assistant: Mapping[str, Any] | None = None,
    phone_number: Mapping[str, Any] | None = None,
    tool: Mapping[str, Any] | None = None,
    endpoints: Iterable[Mapping[str, Any]] = (),
    transcript_type: str | None = None,
) -> tuple[Target, ...]:
    """Targets for one message, in delivery order.

    ``assistant`` / ``phone_number`` / ``tool`` are wire-shaped dicts (``id``, ``server``,
    ``serverMessages``). ``endpoints`` are webhook-endpoint dicts ``{id, url, scope, scopeId, events[],
    enabled, credentialId, headers, timeoutSeconds}``. The assistant's, phone number's and tool's servers
    obey the assistant's ``serverMessages``; an endpoint with ``events`` obeys its own list, one without
    obeys ``serverMessages``. Endpoints are listed most specific scope first; a URL appears once.
    """
    server_messages = (assistant or {}).get("serverMessages")
    primary: Target | None = None
    if wanted(message_type, server_messages, transcript_type=transcript_type):
        candidates = []
        if message_type == "tool-calls":
            candidates.append((_server_of(tool), "tool"))
        candidates += [
            (_server_of(assistant), "assistant"),
            (_server_of(phone_number), "phone-number"),
        ]
        for server, source in candidates:
            primary = target_from_server(server, source)
            if primary is not None:
                break

    ids = {
        "assistant": (assistant or {}).get("id"),
        "phone-number": (phone_number or {}).get("id"),
        "tool": (tool or {}).get("id"),
    }
    matching = [
        e
        for e in endpoints
        if _endpoint_matches(e, message_type, server_messages, ids, transcript_type)
    ]
    matching.sort(key=lambda e: _SCOPE_ORDER[e.get("scope") or "account"])
    out: list[Target] = [primary] if primary is not None else []
    seen = {t.url for t in out}
    for e in matching:
        if e["url"] in seen:
            continue
        seen.add(e["url"])
        out.append(
            Target(
                url=str(e["url"]),
                source="endpoint",
                headers=tuple((str(k), str(v)) for k, v in (e.get("headers") or {}).items()),
                timeout_seconds=float(e.get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS),
                credential_id=e.get("credentialId"),
                endpoint_id=e.get("id"),
                scope=e.get("scope") or "account",
            )
        )
    if message_type in SYNCHRONOUS_TYPES:
        return tuple(out[:1])
    return tuple(out)


# --------------------------------------------------------------------------------------- URL policy

LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
METADATA_ADDRESSES = (
    ipaddress.ip_network("169.254.169.254/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("100.100.100.200/32"),
)
METADATA_HOSTS = ("metadata.google.internal", "metadata.goog")
PRIVATE_RANGES = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "198.18.0.0/15",
        "::1/128",
        "fc00::/7",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class UrlPolicy:
    """Parsed allow/deny lists. Build with :meth:`build`."""

    deny_networks: tuple[IPNetwork, ...] = ()
    deny_hosts: tuple[str, ...] = ()
    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: tuple[str, ...] = ()
    #: deny 10/8, 172.16/12, 192.168/16, 100.64/10, loopback, fc00::/7 unless allowed
    deny_private: bool = False
    #: only what the allow list names may be reached
    allow_list_only: bool = False
    schemes: tuple[str, ...] = ("http", "https")

    @classmethod
    def build(
        cls,
        *,
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
        deny_private: bool = False,
        allow_list_only: bool = False,
    ) -> UrlPolicy:
        """Entries are CIDRs / addresses or host names (``*.example.com`` matches subdomains)."""
        an, ah = _split_entries(allow, "allow")
        dn, dh = _split_entries(deny, "deny")
        return cls(dn, dh, an, ah, deny_private, allow_list_only)


def _split_entries(
    entries: Iterable[str], what: str
) -> tuple[tuple[IPNetwork, ...], tuple[str, ...]]:
    nets: list[IPNetwork] = []
    hosts: list[str] = []
    for raw in entries:
        entry = str(raw).strip()
        if not entry:
            continue
        try:
            nets.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        host = entry.lower().rstrip(".")
        body = host[2:] if host.startswith("*.") else host
        if not body or "/" in body or any(c in body for c in " :@?#"):
            raise ValueError(f"{what} list: {entry!r} is neither a CIDR nor a host name")
        hosts.append(host)
    return tuple(nets), tuple(hosts)


@dataclass(frozen=True)
class UrlDecision:
    allowed: bool
    reason: str
    host: str = ""
    port: int = 0
    #: the checked addresses: connect to one of these, not to a fresh resolution (DNS rebinding)
    addresses: tuple[str, ...] = ()


def _host_matches(host: str, patterns: Iterable[str]) -> bool:
    for p in patterns:
        if p.startswith("*."):
            if host.endswith(p[1:]) and host != p[2:]:
                return True
        elif host == p:
            return True
    return False


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The address the C library's inet_aton would read from ``host``: decimal, octal (0177.0.0.1),
    hex (0x7f.1) and short forms (127.1, 2130706433). None when ``host`` is not such a form."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        try:
            if part.lower().startswith("0x"):
                values.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            else:
                if not part.isdigit():
                    return None
                values.append(int(part, 10))
        except ValueError:
            return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 1 << (8 * (5 - len(values))):
        return None
    number = 0
    for v in head:
        number = number << 8 | v
    number = number << (8 * (5 - len(values))) | last
    return ipaddress.IPv4Address(number)


def _parse_address(text: str) -> IPAddress | None:
    text = text.strip().strip("[]").split("%", 1)[0]
    try:
        addr: IPAddress = ipaddress.ip_address(text)
    except ValueError:
        addr4 = _inet_aton(text)
        if addr4 is None:
            return None
        addr = addr4
    return _embedded_v4(addr)


def _embedded_v4(addr: IPAddress) -> IPAddress:
    """The IPv4 address inside IPv4-mapped, NAT64 or 6to4 IPv6 forms (checked as IPv4)."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr in _NAT64:
            return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if addr.sixtofour is not None:
            return addr.sixtofour
    return addr


def _address_verdict(addr: IPAddress, policy: UrlPolicy) -> str | None:
    """None when ``addr`` may be reached, else the reason."""
    for net in policy.deny_networks:
        if addr.version == net.version and addr in net:
            return f"address {addr} is in the deny list ({net})"
    for net in policy.allow_networks:
        if addr.version == net.version and addr in net:
            return None
    if policy.allow_list_only:
        return f"address {addr} is not in the allow list"
    for net in METADATA_ADDRESSES:
        if addr.version == net.version and addr in net:
            return f"address {addr} is a cloud metadata address"
    for net in LINK_LOCAL:
        if addr.version == net.version and addr in net:
            return f"address {addr} is link-local"
    if addr.is_unspecified or addr.is_multicast or (addr.is_reserved and not addr.is_loopback):
        return f"address {addr} is not a unicast host address"
    if isinstance(addr, ipaddress.IPv4Address) and addr == ipaddress.IPv4Address("255.255.255.255"):
        return f"address {addr} is the broadcast address"
    if policy.deny_private:
        for net in PRIVATE_RANGES:
            if addr.version == net.version and addr in net:
                return (
                    f"address {addr} is in a private range ({net}) and private targets are denied"
                )
    return None


def check_url(url: str, policy: UrlPolicy, resolve: Resolver) -> UrlDecision:
    """Whether ``url`` may be POSTed to under ``policy``; ``resolve`` turns a host name into addresses.

    Order: scheme; host-name deny list, allow list, metadata names; then each address (IP literals,
    inet_aton forms such as ``2130706433`` or ``0177.1``, IPv4 inside IPv6 are read as the address they
    mean): deny list, allow list, metadata, link-local, non-unicast, private. Every address must pass.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return UrlDecision(False, f"malformed URL: {exc}")
    scheme = parts.scheme.lower()
    if scheme not in policy.schemes:
        return UrlDecision(
            False, f"scheme {scheme or '(none)'!r} is not allowed (http or https only)"
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return UrlDecision(False, "URL has no host")
    port = port or (443 if scheme == "https" else 80)

    literal = _parse_address(host)
    if literal is None:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return UrlDecision(False, f"host {host!r} is not a valid host name", host, port)
        if _host_matches(host, policy.deny_hosts):
            return UrlDecision(False, f"host {host} is in the deny list", host, port)
        host_allowed = _host_matches(host, policy.allow_hosts)
        if not host_allowed:
            if policy.allow_list_only and not policy.allow_networks:
                return UrlDecision(False, f"host {host} is not in the allow list", host, port)
            if host in METADATA_HOSTS:
                return UrlDecision(False, f"host {host} is a cloud metadata service", host, port)
        try:
            resolved = tuple(resolve(host, port))
        except OSError as exc:
            return UrlDecision(False, f"host {host} does not resolve: {exc}", host, port)
        if not resolved:
            return UrlDecision(False, f"host {host} resolved to no address", host, port)
    else:
        host_allowed = False
        resolved = (host,)

    checked: list[str] = []
    for text in resolved:
        addr = _parse_address(text)
        if addr is None:
            return UrlDecision(
                False, f"host {host} resolved to an unreadable address {text!r}", host, port
            )
        # an allowed host name lifts the built-in and private denials, never the explicit deny list
        verdict = _address_verdict(addr, policy)
        if verdict is not None and host_allowed and "deny list" not in verdict:
            verdict = None
        if verdict is not None:
            return UrlDecision(False, verdict, host, port, tuple(checked))
        checked.append(str(addr))
    return UrlDecision(True, "allowed", host, port, tuple(checked))
