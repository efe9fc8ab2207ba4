"""The facade's systemd units (units/memsched-grpc.socket.j2, units/memsched-grpc.service.j2): their
template variables, and what install-units does with them. No gRPC import: the renderer uses this.

The units render only when ``[facade] enabled = true``; ``facade_unit_vars`` returns
None otherwise and :func:`memsched.systemd.render.render_static` then skips them.
"""

from __future__ import annotations

from typing import Any

from memsched.config.load import Config
from memsched.config.values import parse_listen

SOCKET_UNIT = "memsched-grpc.socket"
SERVICE_UNIT = "memsched-grpc.service"
UNIT_PREFIX = "memsched-grpc."
DEFAULT_LISTEN_STREAM = "%t/memsched/grpc.sock"  # %t: $XDG_RUNTIME_DIR (user manager) or /run (system)


def facade_unit_vars(config: Config, scope: str) -> dict[str, Any] | None:
    """Return the template variables of the facade units, or None when the facade is not enabled.

    Raises ValueError for a listen address the config's validation would have refused.
    """
    settings = dict((config.settings or {}).get("facade", {}))
    if not settings.get("enabled"):
        return None
    # The config's own validation (memsched.config.load.cross_check) already refused what cannot
    # be served: a malformed address, TCP without a token, the network without allow_remote, a job named grpc.
    listen = str(settings.get("listen") or "")
    tcp = False
    if listen:
        address = parse_listen(listen)
        tcp = address.kind == "tcp"
        listen_stream: str = address.systemd_listen
        specifiers = False
    else:
        listen_stream = DEFAULT_LISTEN_STREAM
        specifiers = True
    return {
        "listen_stream": listen_stream,
        "listen_specifiers": specifiers,
        "tcp": tcp,
        "group": str(settings.get("group") or ""),
        "idle_timeout": int(settings.get("idle_timeout") or 0),  # type: ignore[call-overload]
        "watchdog": int(settings.get("watchdog") or 0),  # type: ignore[call-overload]
        "stop_timeout": int(settings.get("drain_timeout") or 0) + 15_000,  # type: ignore[call-overload]
    }


def apply_facade(manager: Any, plan: Any, report: Any) -> None:
    """After install-units wrote the units: enable and start memsched-grpc.socket, restart it when its file
    changed, and stop a running server whose unit changed (the socket starts the new one on the next call).

    ``manager`` is a ManagerClient, ``plan`` the InstallPlan, ``report`` the InstallReport (appended to).
    """
    actions = {change.name: change.action for change in plan.changes}
    if actions.get(SOCKET_UNIT) in (None, "delete"):
        return
    changed = ("update", "reload")  # reload: written by an install that was interrupted before it got here
    if actions.get(SERVICE_UNIT) in changed or actions.get(SOCKET_UNIT) in changed:
        if manager.properties(SERVICE_UNIT).get("ActiveState") in ("active", "activating", "reloading"):
            manager.stop(SERVICE_UNIT)
            report.stopped.append(SERVICE_UNIT)
    if manager.unit_file_state(SOCKET_UNIT) != "enabled":
        manager.enable([SOCKET_UNIT])
        report.enabled.append(SOCKET_UNIT)
    active = manager.properties(SOCKET_UNIT).get("ActiveState")
    if active == "active" and actions.get(SOCKET_UNIT) in changed:
        manager._manager("RestartUnit", "ss", SOCKET_UNIT.encode(), b"replace")
        report.restarted.append(SOCKET_UNIT)
    elif active != "active":
        manager.start(SOCKET_UNIT)
        report.started.append(SOCKET_UNIT)
