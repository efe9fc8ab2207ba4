"""A client of the facade (what `memsched --endpoint ADDR ...` uses): calls with the generated stub, gRPC errors as memsched errors.

Endpoints use the ``--listen`` syntax: ``unix:PATH`` or ``tcp:HOST:PORT``. Over TCP
the token is sent as ``authorization: Bearer TOKEN``; with ``$MEMSCHED_TLS_CA_FILE`` set
the TCP connection is TLS, the server's certificate checked against that CA and the host.
"""

from __future__ import annotations

import os

import grpc

from memsched.errors import EXIT_NO_MANAGER, MemschedError, PermissionDenied, UsageError
from memsched.facade._generated import memory_scheduler_pb2 as pb
from memsched.facade._generated import memory_scheduler_pb2_grpc as pb_grpc
from memsched.facade.listen import ListenAddress, parse_address
from memsched.facade.tls import client_ca

TOKEN_FILE_ENV = "MEMSCHED_TOKEN_FILE"
DEFAULT_TIMEOUT = 30.0


class FacadeUnavailable(MemschedError):
    """The facade at the endpoint cannot be reached (exit 3, like an unreachable manager)."""

    exit_code = EXIT_NO_MANAGER


def grpc_target(address: ListenAddress) -> str:
    """Return the gRPC channel target of an endpoint address."""
    if address.kind == "unix":
        return f"unix:{address.path}"
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{host}:{address.port}"


def token_from_environment(env: dict[str, str] | None = None) -> str | None:
    """Return the token in the file $MEMSCHED_TOKEN_FILE names (None when unset). Raises UsageError."""
    from memsched.facade.auth import load_token

    env = os.environ if env is None else env
    path = env.get(TOKEN_FILE_ENV, "")
    return load_token(path, TOKEN_FILE_ENV) if path else None


class FacadeClient:
    """One channel to a facade. Methods return the response messages and raise MemschedError subclasses:
    FacadeUnavailable (exit 3), PermissionDenied (exit 4), UsageError (exit 2: unknown job, bad argument),
    MemschedError (exit 1: anything else the server refused)."""

    def __init__(self, endpoint: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        self.endpoint = endpoint
        self.address = parse_address(endpoint, "--endpoint")
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        ca = client_ca() if self.address.kind == "tcp" else None
        if ca is not None:  # TLS: the server's certificate must chain to $MEMSCHED_TLS_CA_FILE and name the host
            self._channel = grpc.secure_channel(grpc_target(self.address), grpc.ssl_channel_credentials(root_certificates=ca))
        else:
            self._channel = grpc.insecure_channel(grpc_target(self.address))
        self.stub = pb_grpc.MemoryServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> FacadeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: object, timeout: float | None = None) -> object:
        try:
            return getattr(self.stub, method)(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._translate(exc) from None

    def _translate(self, exc: grpc.RpcError) -> MemschedError:
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN  # type: ignore[attr-defined]
        details = (exc.details() if hasattr(exc, "details") else "") or ""  # type: ignore[attr-defined]
        if code == grpc.StatusCode.UNAVAILABLE:
            return FacadeUnavailable(f"--endpoint {self.endpoint}: cannot reach the facade ({details or 'unavailable'})")
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            hint = f" (set {TOKEN_FILE_ENV} to the token file)" if code == grpc.StatusCode.UNAUTHENTICATED else ""
            return PermissionDenied(f"--endpoint {self.endpoint}: refused: {details}{hint}")
        if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            return UsageError(details)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return MemschedError(f"--endpoint {self.endpoint}: no answer within the deadline")
        return MemschedError(f"--endpoint {self.endpoint}: {code.name.lower()}: {details}")

    # ------------------------------------------------------------------ calls

    def status(self) -> pb.GetSchedulerStatusResponse:
        """GetSchedulerStatus."""
        return self._call("GetSchedulerStatus", pb.GetSchedulerStatusRequest())  # type: ignore[return-value]

    def pause(self, job: str, resume_at_ms: int | None = None) -> pb.PauseJobResponse:
        """PauseJob, until ResumeJob or (``resume_at_ms``) until that instant; success=false with error when the server could not."""
        request = pb.PauseJobRequest(job_name=job)
        if resume_at_ms is not None:
            request.resume_at_ms = resume_at_ms
        return self._call("PauseJob", request)  # type: ignore[return-value]

    def resume(self, job: str) -> pb.ResumeJobResponse:
        """ResumeJob (success=false with error when the server could not resume it)."""
        return self._call("ResumeJob", pb.ResumeJobRequest(job_name=job))  # type: ignore[return-value]

    def run(self, job: str, wait: bool = False, timeout: float | None = None) -> pb.RunJobResponse:
        """RunJob; with ``wait`` the call lasts as long as the run (``timeout``, default 24 h)."""
        limit = timeout if timeout is not None else (86_400.0 if wait else self.timeout)
        return self._call("RunJob", pb.RunJobRequest(job_name=job, wait=wait), limit)  # type: ignore[return-value]

    def history(self, job: str, limit: int = 20) -> pb.GetJobHistoryResponse:
        """GetJobHistory."""
        return self._call("GetJobHistory", pb.GetJobHistoryRequest(job_name=job, limit=limit))  # type: ignore[return-value]

    def health(self, service: str = "") -> str:
        """Return the standard health service's status name (SERVING, NOT_SERVING, ...)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._translate(exc) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
