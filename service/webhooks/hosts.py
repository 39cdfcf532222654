"""Where webhooks may not go unless the configuration names the host: addresses that reach
the pod itself or its cloud's metadata service (a server-side request forgery guard).
Checked on the configured URL at startup and again on every address a hostname resolves to,
so a name pointing at 169.254.169.254 is refused as the literal is. Private networks
(10/8, 172.16/12, 192.168/16) stay allowed: receivers in the same VPC live there."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

Network = IPv4Network | IPv6Network

REFUSED: tuple[tuple[Network, str], ...] = (
    (ip_network("127.0.0.0/8"), "a loopback address"),
    (ip_network("::1/128"), "a loopback address"),
    (ip_network("169.254.0.0/16"), "link-local (cloud metadata answers on 169.254.169.254)"),
    (ip_network("fe80::/10"), "link-local"),
    (ip_network("100.100.100.200/32"), "Alibaba Cloud's metadata service"),
    (ip_network("0.0.0.0/8"), "an unspecified address (it reaches this host)"),
    (ip_network("::/128"), "an unspecified address (it reaches this host)"),
)


def _addresses(text: str) -> list[IPv4Address | IPv6Address]:
    """`text` as an IP address, and an IPv4-mapped IPv6 one as IPv4 too; [] for a name."""
    try:
        address = ip_address(text.strip("[]").partition("%")[0])  # brackets, a zone id
    except ValueError:
        return []
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return [address, address.ipv4_mapped]
    return [address]


def allow_entry(entry: str) -> str:
    """An `allow_internal_hosts` entry: an IP address, a CIDR network or a hostname."""
    try:
        ip_network(entry, strict=False)
    except ValueError:
        if not entry or any(c.isspace() or c in "/[]@:" for c in entry):
            raise ValueError(f"{entry!r} is neither a hostname, an address nor a CIDR") from None
    return entry


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """The refused addresses, less what `allow_internal_hosts` names."""

    names: frozenset[str] = frozenset()  # hostnames, lower case: reachable whatever they resolve to
    networks: tuple[Network, ...] = ()

    @classmethod
    def allowing(cls, entries: list[str]) -> HostPolicy:
        names, networks = set(), []
        for entry in entries:
            try:
                networks.append(ip_network(entry, strict=False))
            except ValueError:
                names.add(entry.lower().rstrip("."))
        return cls(frozenset(names), tuple(networks))

    def refusal(self, host: str, address: str | None = None) -> str | None:
        """Why `host` (resolved to `address`, or itself an address) may not be reached; None
        when it may. Without an address, a hostname is judged by its name alone."""
        if host.lower().rstrip(".") in self.names:
            return None
        found = _addresses(address or host)
        if not found:
            # RFC 6761: every name under localhost is loopback, whatever a resolver says.
            name = host.lower().rstrip(".")
            is_local = name == "localhost" or name.endswith(".localhost")
            return "a loopback name" if is_local else None
        if any(each in network for each in found for network in self.networks):
            return None
        refused = (why for each in found for network, why in REFUSED if each in network)
        return next(refused, None)
