"""A client of the systemd manager over D-Bus (pystemd): one code path for the user and system managers.

Properties are read with ``org.freedesktop.DBus.Properties.GetAll`` per unit
object, in one round trip per interface, with no introspection and no
``systemctl`` subprocess.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from memsched.errors import ManagerUnavailable, MemschedError, PermissionDenied
from memsched.systemd.connect import manager_address

_DEST = b"org.freedesktop.systemd1"
_MANAGER_PATH = b"/org/freedesktop/systemd1"
_MANAGER_IFACE = b"org.freedesktop.systemd1.Manager"
_PROPS_IFACE = b"org.freedesktop.DBus.Properties"
UNIT_IFACE = "org.freedesktop.systemd1.Unit"
SERVICE_IFACE = "org.freedesktop.systemd1.Service"
TIMER_IFACE = "org.freedesktop.systemd1.Timer"
USEC_INFINITY = 2**64 - 1


@dataclass(frozen=True)
class UnitFileChange:
    """One change reported by Enable/DisableUnitFiles: (type, file, destination)."""

    kind: str
    path: str
    destination: str


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_decode(v) for v in value)
    if isinstance(value, dict):
        return {_decode(k): _decode(v) for k, v in value.items()}
    return value


class ManagerClient:
    """Talks to one systemd manager. Construction does no I/O; call :meth:`open` (or use ``with``)."""

    def __init__(self, scope: str, env: dict[str, str] | None = None):
        self.scope = scope
        self.env = env
        self._bus: Any = None

    # ------------------------------------------------------------ connection

    def open(self) -> ManagerClient:
        """Connect. Raises :class:`ManagerUnavailable` or :class:`PermissionDenied` with what to do."""
        from memsched.systemd.dbus import dbuslib

        DBus, DBusAddress = dbuslib().DBus, dbuslib().DBusAddress
        address = manager_address(self.scope, self.env)
        try:
            if address.peer_to_peer:
                bus = DBusAddress(address.address.encode(), peer_to_peer=True)
            else:
                bus = DBus(user_mode=False)
            bus.open()
        except Exception as exc:  # pystemd raises DBusError subclasses with errno-ish text
            text = str(exc)
            if "ermission" in text or "EACCES" in text or "Access denied" in text:
                raise PermissionDenied(
                    f"the {self.scope} manager refused the connection ({text}); for --system run as root "
                    "(or with a polkit rule that lets you manage units)"
                ) from None
            raise ManagerUnavailable(f"cannot connect to the {self.scope} manager at {address.address}: {text}") from None
        self._bus = bus
        return self

    def close(self) -> None:
        if self._bus is not None:
            try:
                self._bus.close()
            except Exception:
                pass
            self._bus = None

    def __enter__(self) -> ManagerClient:
        return self if self._bus is not None else self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ raw calls

    def _call(self, path: bytes, interface: bytes, method: bytes, signature: str = "", args: list[Any] | None = None) -> Any:
        from memsched.systemd.dbus import dbuslib

        apply_signature = dbuslib().apply_signature
        if self._bus is None:
            raise RuntimeError("ManagerClient.open() was not called")
        try:
            typed = apply_signature(signature.encode(), list(args or [])) if signature else []
            return self._bus.call_method(_DEST, path, interface, method, typed)
        except Exception as exc:
            raise _translate(exc, method.decode()) from None

    def _manager(self, method: str, signature: str = "", *args: Any) -> Any:
        reply = self._call(_MANAGER_PATH, _MANAGER_IFACE, method.encode(), signature, list(args))
        return reply.body

    # ------------------------------------------------------------ reads

    def version(self) -> str:
        body = self._call(_MANAGER_PATH, _PROPS_IFACE, b"Get", "ss", [_MANAGER_IFACE, b"Version"]).body
        return _decode(body)

    def major_version(self) -> int:
        try:
            return int(self.version().split(".")[0].split("-")[0].split("~")[0])
        except ValueError:
            return 0

    def environment(self) -> dict[str, str]:
        """Return the manager's environment block: what every unit it starts inherits."""
        body = self._call(_MANAGER_PATH, _PROPS_IFACE, b"Get", "ss", [_MANAGER_IFACE, b"Environment"]).body
        pairs = [str(item).partition("=") for item in _decode(body)]
        return {name: value for name, _, value in pairs if name}

    def set_environment(self, assignments: dict[str, str]) -> None:
        """Add ``NAME=value`` pairs to the manager's environment block (what `systemctl set-environment` does)."""
        self._manager("SetEnvironment", "as", [f"{k}={v}".encode() for k, v in assignments.items()])

    def unit_path(self, unit: str) -> bytes:
        """Return the unit's object path, loading the unit (LoadUnit works for unloaded and missing units)."""
        return self._manager("LoadUnit", "s", unit.encode())

    def properties(self, unit: str, *interfaces: str) -> dict[str, Any]:
        """Return the unit's properties of the given interfaces (default: Unit), decoded."""
        path = self.unit_path(unit)
        result: dict[str, Any] = {}
        for iface in interfaces or (UNIT_IFACE,):
            body = self._call(path, _PROPS_IFACE, b"GetAll", "s", [iface.encode()]).body
            raw_id = body.pop(b"InvocationID", None) if isinstance(body, dict) else None
            result.update(_decode(body))
            if raw_id is not None:
                result["InvocationID"] = bytes(raw_id).hex() if raw_id else ""
        return result

    def bulk_properties(self, units: list[str], interfaces_of: dict[str, tuple[str, ...]]) -> dict[str, dict[str, Any]]:
        """Return properties of many units; ``interfaces_of`` maps a unit suffix (".timer") to interfaces."""
        out = {}
        for unit in units:
            suffix = "." + unit.rsplit(".", 1)[-1]
            out[unit] = self.properties(unit, UNIT_IFACE, *interfaces_of.get(suffix, ()))
        return out

    def needs_reload(self, units: list[str]) -> set[str]:
        """Return those of ``units`` whose unit file (or drop-ins) changed on disk since the manager
        loaded them: its NeedDaemonReload. Templates (``foo@.service``) cannot be asked and are left out.

        install-units and doctor both decide "written but not loaded" by this one function.
        """
        stale = set()
        for unit in units:
            if "@." in unit:
                continue
            path = self.unit_path(unit).decode()
            if self.get_property(path, UNIT_IFACE, "NeedDaemonReload"):
                stale.add(unit)
        return stale

    def list_units(self, patterns: list[str]) -> list[dict[str, Any]]:
        """Return loaded units matching the glob patterns (name, description, load/active/sub state)."""
        rows = self._manager("ListUnitsByPatterns", "asas", [], [p.encode() for p in patterns])
        keys = ("name", "description", "load_state", "active_state", "sub_state", "following", "path", "job_id", "job_type", "job_path")
        return [dict(zip(keys, _decode(r))) for r in rows]

    def units_by_names(self, units: list[str]) -> dict[str, dict[str, Any]]:
        """Return load/active/sub state and object path of many units in one call (loaded or not)."""
        rows = self._manager("ListUnitsByNames", "as", [u.encode() for u in units])
        keys = ("name", "description", "load_state", "active_state", "sub_state", "following", "path", "job_id", "job_type", "job_path")
        return {row["name"]: row for row in (dict(zip(keys, _decode(r))) for r in rows)}

    def get_property(self, path: str, interface: str, name: str) -> Any:
        """Return one property of the object at ``path``."""
        body = self._call(path.encode(), _PROPS_IFACE, b"Get", "ss", [interface.encode(), name.encode()]).body
        return _decode(body)

    def unit_file_state(self, unit: str) -> str:
        try:
            return _decode(self._manager("GetUnitFileState", "s", unit.encode()))
        except MemschedError:
            return "not-found"

    # ------------------------------------------------------------ changes

    def reload(self) -> None:
        """daemon-reload, waiting until the manager has reloaded."""
        self._manager("Reload")
        # Reload returns before the reload completes on a p2p connection; wait for the manager to answer again.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.version()
                return
            except MemschedError:
                time.sleep(0.05)

    def start(self, unit: str, mode: str = "replace") -> str:
        return _decode(self._manager("StartUnit", "ss", unit.encode(), mode.encode()))

    def stop(self, unit: str, mode: str = "replace") -> str:
        """Stop a unit; a unit that is not loaded is already stopped (returns "")."""
        try:
            return _decode(self._manager("StopUnit", "ss", unit.encode(), mode.encode()))
        except MemschedError as exc:
            if "not loaded" in str(exc) or "NoSuchUnit" in str(exc):
                return ""
            raise

    def reset_failed(self, unit: str) -> None:
        try:
            self._manager("ResetFailedUnit", "s", unit.encode())
        except MemschedError:
            pass  # not loaded or not failed: nothing to reset

    def enable(self, unit_files: list[str]) -> list[UnitFileChange]:
        """Enable unit files (as systemctl enable: not runtime, replacing stale links, then daemon-reload
        if a link changed); return the changes made."""
        if not unit_files:
            return []
        body = self._manager("EnableUnitFiles", "asbb", [u.encode() for u in unit_files], False, True)
        return self._reload_after([UnitFileChange(*_decode(c)) for c in body[1]])

    def disable(self, unit_files: list[str]) -> list[UnitFileChange]:
        """Disable unit files (as systemctl disable, then daemon-reload if a link changed); return the changes made."""
        if not unit_files:
            return []
        body = self._manager("DisableUnitFiles", "asb", [u.encode() for u in unit_files], False)
        return self._reload_after([UnitFileChange(*_decode(c)) for c in body])

    def _reload_after(self, changes: list[UnitFileChange]) -> list[UnitFileChange]:
        # Since systemd 255 a manager that changed an enablement link marks every unit
        # NeedDaemonReload=yes until the next daemon-reload ("changed on disk" warnings on 257),
        # so do what systemctl enable/disable do after the call: reload.
        if changes:
            self.reload()
        return changes

    def wait_job_done(self, job_path: str, timeout: float, what: str | None = None) -> bool:
        """Wait until a job object disappears (the job finished); return False on timeout.

        Only the manager's own answer that the object is unknown means the job is gone.
        Any other error (the connection dropped, a reply timed out, the manager was
        re-executed) is not the end of the job: the wait goes on, on a new connection.
        Raises :class:`MemschedError` naming ``what`` (default: the job) and the last
        error when the manager could not be asked until the deadline.
        """
        deadline = time.monotonic() + timeout
        last_error: MemschedError | None = None
        while time.monotonic() < deadline:
            if self._bus is None:
                self._reconnect()
            if self._bus is None:
                last_error = last_error or ManagerUnavailable(f"cannot reconnect to the {self.scope} manager")
            else:
                try:
                    self._call(job_path.encode(), _PROPS_IFACE, b"Get", "ss", [b"org.freedesktop.systemd1.Job", b"State"])
                    last_error = None
                except MemschedError as exc:
                    if _UNKNOWN_OBJECT in exc.message:
                        return True
                    last_error = exc
                    self._reconnect()
            time.sleep(0.05)
        if last_error is not None:
            raise MemschedError(
                f"lost the {self.scope} manager while waiting for {what or job_path} (the run may still be going; "
                f"see `systemctl --{self.scope} status`): {last_error.message}"
            )
        return False

    def _reconnect(self) -> None:
        """Drop the connection and open a new one; a failure leaves it closed (the next call fails and is retried)."""
        self.close()
        try:
            self.open()
        except MemschedError:
            self._bus = None  # still away: the caller tries again until its deadline


# What sd-bus says for an object path nothing serves (EBADR): a job object is gone once its job ended.
_UNKNOWN_OBJECT = "Unknown object"


def _translate(exc: Exception, method: str) -> MemschedError:
    text = str(exc)
    if "AccessDenied" in text or "Access denied" in text or "InteractiveAuthorizationRequired" in text:
        return PermissionDenied(f"the systemd manager refused {method}: permission denied (for --system, run as root)")
    return MemschedError(f"systemd {method} failed: {text}")
