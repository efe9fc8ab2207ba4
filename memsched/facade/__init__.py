"""The gRPC facade: the original daemon's MemoryService scheduler calls, answered by memsched's core.

Modules, one concern each:

* ``_generated`` - protobuf/gRPC code compiled from ``proto/`` at build time (not in git)
* ``convert``    - core data (JobStatus, RunRecord) to protobuf messages
* ``listen``     - listen addresses: parsing, binding, the loopback rule
* ``activation`` - systemd socket activation (LISTEN_FDS) and sd_notify (READY, STATUS, WATCHDOG)
* ``relay``      - the front door: accepts connections, reads SO_PEERCRED, relays to the gRPC server
* ``auth``       - who may call what (peer uid/gid over unix sockets, a bearer token over TCP)
* ``service``    - the MemoryService handlers: request checks, core calls, error mapping
* ``server``     - assembly and lifecycle: idle exit, SIGTERM drain, watchdog
* ``client``     - the client `memsched --endpoint` uses

Nothing here is imported by the normal CLI paths: only `memsched serve` and
`memsched --endpoint ...` pay for gRPC.
"""
