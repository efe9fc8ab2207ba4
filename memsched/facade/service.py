"""The MemoryService handlers: check the request and the caller, call the core, map its errors.

Requests arrive as raw bytes and are decoded here, so a request that is not a
valid message gets INVALID_ARGUMENT (gRPC's own decoding would answer INTERNAL and
log a traceback). Errors never carry a traceback to the caller:

* PauseJob / ResumeJob keep the original contract: an unknown job or a failed
  operation answers ``success=false`` with ``error`` set.
* RunJob / GetJobHistory use status codes: NOT_FOUND (unknown job),
  INVALID_ARGUMENT (bad name or limit), FAILED_PRECONDITION (run refused by the
  overlap policy, units not installed), UNAVAILABLE (no systemd manager),
  PERMISSION_DENIED (the manager refused).
* Every call: UNAUTHENTICATED / PERMISSION_DENIED from :mod:`memsched.facade.auth`,
  INTERNAL for a bug (the traceback goes to the service's journal only).
"""

from __future__ import annotations

import re
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import grpc
from google.protobuf.message import DecodeError

from memsched.config import schema
from memsched.config.load import Config
from memsched.errors import ManagerUnavailable, MemschedError, PermissionDenied, UnknownJobError, UsageError
from memsched.facade import convert
from memsched.facade._generated import memory_scheduler_pb2 as pb
from memsched.facade.auth import AuthDenied, AuthPolicy, Peer

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["MemoryService"].full_name  # "memory.MemoryService"
DEFAULT_HISTORY = 20
MAX_HISTORY = 10_000
_JOB_NAME = re.compile(schema.JOB_NAME_PATTERN)


class CallError(Exception):
    """End a call with a gRPC status ``code`` and ``message``."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Tracker:
    """Calls in flight and the time of the last one's end (time.monotonic), for the idle exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.calls = 0
        self.last_end = time.monotonic()

    def begin(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.calls += 1

    def end(self) -> None:
        with self._lock:
            self.in_flight -= 1
            self.last_end = time.monotonic()


@dataclass
class _Batch:
    done: threading.Event
    value: Any = None
    error: BaseException | None = None

    def result(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


class Coalescer:
    """Concurrent callers share one computation, and only one that started after they arrived.

    While a computation runs, newcomers queue for the next one; when it ends, the
    next one runs once for all of them. Under load this bounds the work to one
    computation at a time without ever answering with data older than the call.
    """

    def __init__(self, compute: Callable[[], Any]):
        self._compute = compute
        self._lock = threading.Lock()
        self._running: _Batch | None = None
        self._next: _Batch | None = None

    def get(self) -> Any:
        """Return the result of a computation started after this call (raising what it raised)."""
        previous = None
        with self._lock:
            if self._next is not None:
                return_batch = self._next
                leader = False
            elif self._running is not None:
                previous = self._running
                return_batch = self._next = _Batch(threading.Event())
                leader = True
            else:
                return_batch = self._running = _Batch(threading.Event())
                leader = True
        if not leader:
            return return_batch.result()
        if previous is not None:
            previous.done.wait()
            with self._lock:
                self._next = None
                self._running = return_batch
        try:
            return_batch.value = self._compute()
        except BaseException as exc:
            return_batch.error = exc
        finally:
            with self._lock:
                if self._running is return_batch:
                    self._running = None
            return_batch.done.set()
        return return_batch.result()


def check_job_name(name: str) -> str:
    """Return ``name`` when it can be a job name; raise CallError(INVALID_ARGUMENT) otherwise."""
    if not name:
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT, "job_name is empty")
    if not _JOB_NAME.match(name):
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT, f"job_name {name[:80]!r} is not a job name ({schema.JOB_NAME_RULE})")
    return name


def _status_code(exc: MemschedError) -> grpc.StatusCode:
    if isinstance(exc, UnknownJobError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, UsageError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, ManagerUnavailable):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, PermissionDenied):
        return grpc.StatusCode.PERMISSION_DENIED
    return grpc.StatusCode.FAILED_PRECONDITION


def actor_of(peer: Peer | None) -> str:
    """Who a pause is recorded as: the caller the kernel or the token vouched for."""
    host = socket.gethostname()
    if peer is None:
        return f"gRPC caller on {host}"
    if peer.transport == "unix":
        import pwd

        try:
            user = pwd.getpwuid(peer.uid).pw_name  # type: ignore[arg-type]
        except (KeyError, TypeError):
            user = str(peer.uid)
        return f"{user}@{host} (uid {peer.uid}) via gRPC"
    return f"token holder at {peer.address} via gRPC"


class FacadeService:
    """The handlers of ``memory.MemoryService`` over one config and scope."""

    def __init__(self, config: Config, scope: str, policy: AuthPolicy, peer_of: Callable[[str], Peer | None], tracker: Tracker):
        self.config = config
        self.scope = scope
        self.policy = policy
        self.peer_of = peer_of
        self.tracker = tracker
        self._status = Coalescer(self._read_status)
        self._methods: dict[str, tuple[Any, Callable[[Any, Peer | None], Any]]] = {
            "GetSchedulerStatus": (pb.GetSchedulerStatusRequest, self.get_scheduler_status),
            "PauseJob": (pb.PauseJobRequest, self.pause_job),
            "ResumeJob": (pb.ResumeJobRequest, self.resume_job),
            "RunJob": (pb.RunJobRequest, self.run_job),
            "GetJobHistory": (pb.GetJobHistoryRequest, self.get_job_history),
        }

    def generic_handler(self) -> grpc.GenericRpcHandler:
        """Return the handler to register on a grpc.Server (every method of the service, unary-unary)."""
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                self._handler(name),
                request_deserializer=None,  # raw bytes: decoded in _handler so bad input is INVALID_ARGUMENT
                response_serializer=lambda message: message.SerializeToString(),
            )
            for name in self._methods
        }
        return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)

    def _handler(self, name: str) -> Callable[[bytes, grpc.ServicerContext], Any]:
        request_type, method = self._methods[name]

        def handle(raw: bytes, context: grpc.ServicerContext) -> Any:
            self.tracker.begin()
            try:
                response, failure = self._dispatch(name, request_type, method, raw, context), None
            except CallError as exc:
                response, failure = None, exc
            finally:
                self.tracker.end()
            if failure is not None:
                context.abort(failure.code, failure.message)
            return response

        return handle

    def _dispatch(self, name: str, request_type: Any, method: Callable, raw: bytes, context: grpc.ServicerContext) -> Any:
        try:
            request = request_type.FromString(raw)
        except (DecodeError, ValueError):
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {request_type.DESCRIPTOR.full_name}") from None
        peer = self.peer_of(context.peer())
        try:
            self.policy.check(peer, name, context.invocation_metadata())
        except AuthDenied as exc:
            code = grpc.StatusCode.UNAUTHENTICATED if exc.code == "unauthenticated" else grpc.StatusCode.PERMISSION_DENIED
            raise CallError(code, exc.message) from None
        try:
            return method(request, peer)
        except CallError:
            raise
        except MemschedError as exc:
            raise CallError(_status_code(exc), exc.message) from None
        except Exception:
            print(f"memsched serve: internal error in {name}:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            raise CallError(grpc.StatusCode.INTERNAL, "internal error in memsched (see the service's journal)") from None

    # ------------------------------------------------------------------ the calls

    def _read_status(self) -> Any:
        from memsched.ops.status import read_status

        return read_status(self.config, self.scope, None, require_manager=False)

    def get_scheduler_status(self, request: pb.GetSchedulerStatusRequest, peer: Peer | None) -> pb.GetSchedulerStatusResponse:
        """Every enabled job (the same core call as `memsched status`)."""
        return convert.scheduler_status_proto(self._status.get())

    def pause_job(self, request: pb.PauseJobRequest, peer: Peer | None) -> pb.PauseJobResponse:
        """Pause one job (until ResumeJob, or until ``resume_at_ms``); failures (unknown job, an instant not in the
        future included) answer success=false with the error, as the original did."""
        from memsched.ops.pause import pause

        name = check_job_name(request.job_name)
        # resume_at_ms is optional (proto3 presence): unset is the original, open-ended pause.
        until = request.resume_at_ms if convert.has_field(request, "resume_at_ms") else None
        try:
            pause(self.config, self.scope, [name], actor=actor_of(peer), reason="PauseJob over gRPC", until_ms=until)
        except MemschedError as exc:
            return pb.PauseJobResponse(success=False, error=exc.message)
        return pb.PauseJobResponse(success=True)

    def resume_job(self, request: pb.ResumeJobRequest, peer: Peer | None) -> pb.ResumeJobResponse:
        """Resume one job; failures answer success=false with the error, as the original did."""
        from memsched.ops.pause import resume

        name = check_job_name(request.job_name)
        try:
            resume(self.config, self.scope, [name])
        except MemschedError as exc:
            return pb.ResumeJobResponse(success=False, error=exc.message)
        return pb.ResumeJobResponse(success=True)

    def run_job(self, request: pb.RunJobRequest, peer: Peer | None) -> pb.RunJobResponse:
        """Start a run now (and with ``wait`` follow it to its end)."""
        from memsched.ops.control import run_now

        name = check_job_name(request.job_name)
        return convert.run_outcome_proto(run_now(self.config, self.scope, name, wait=request.wait, actor=actor_of(peer)))

    def get_job_history(self, request: pb.GetJobHistoryRequest, peer: Peer | None) -> pb.GetJobHistoryResponse:
        """The job's latest runs and skipped slots, newest first."""
        from memsched.ops.logs import history

        name = check_job_name(request.job_name)
        limit = request.limit or DEFAULT_HISTORY
        if limit > MAX_HISTORY:
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, f"limit {limit}: expected 1 to {MAX_HISTORY} (0 means {DEFAULT_HISTORY})")
        return pb.GetJobHistoryResponse(runs=[convert.run_record_proto(r) for r in history(self.config, self.scope, name, limit)])
