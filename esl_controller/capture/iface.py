"""Which interface carries a call's packets: a route lookup towards the far end (pyroute2).

Runs in the process (and network namespace) that captures. An operator override wins; without an
address to route to, or when the lookup fails, the answer is "all interfaces" (None), which the
sniffer handles by binding its packet socket to no interface.
"""

from __future__ import annotations

import logging

log = logging.getLogger("esl_controller.capture")


class InterfaceError(RuntimeError):
    """The overriding interface does not exist."""


def interface_index(name: str) -> int:
    """The index of a named interface in the current network namespace."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
    if not found:
        raise InterfaceError(f"no interface named {name!r}")
    return int(found[0])


def interface_name(index: int) -> str:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = ipr.get_links(index)
    if not links:
        raise InterfaceError(f"no interface with index {index}")
    return str(links[0].get_attr("IFLA_IFNAME"))


def route_interface(destination: str) -> int | None:
    """The output interface index of the route to ``destination`` (None if there is none)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        with IPRoute() as ipr:
            routes = ipr.route("get", dst=destination)
    except (NetlinkError, OSError, ValueError) as exc:
        log.info("no route to %s: %s", destination, exc)
        return None
    for route in routes:
        oif = route.get_attr("RTA_OIF")
        if oif:
            return int(oif)
    return None


def choose_interface(destination: str | None, override: str = "") -> tuple[int, str]:
    """(index, name) to capture on; index 0 and name ``any`` mean every interface."""
    if override:
        return interface_index(override), override
    if destination:
        index = route_interface(destination)
        if index:
            return index, interface_name(index)
    return 0, "any"
