#!/usr/bin/env python3
"""Benchmark: throughput of the gRPC facade (GetSchedulerStatus, GetJobHistory, health) with 20 installed jobs.

Runs `memsched serve` on a unix socket against a private sandbox manager of its own
(needs root), then fires CALLS calls with CONCURRENCY in flight over a few channels
and prints calls per second and latency percentiles. Every call must succeed.

    .venv/bin/python bench/facade.py [--calls 5000] [--concurrency 200] [--channels 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from memsched.facade._generated import memory_scheduler_pb2 as pb  # noqa: E402
from memsched.facade._generated import memory_scheduler_pb2_grpc as pb_grpc  # noqa: E402
from memsched.systemd.sandbox import Sandbox  # noqa: E402

from _setup import install_jobs  # noqa: E402


def fire(stubs: list, make_call, calls: int, concurrency: int) -> tuple[float, list[float], int]:
    """Run ``calls`` calls, at most ``concurrency`` in flight; return (seconds, latencies, errors)."""
    slots = threading.Semaphore(concurrency)
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    done = threading.Event()
    remaining = [calls]

    def finished(started: float, future: grpc.Future) -> None:
        nonlocal errors
        with lock:
            latencies.append(time.perf_counter() - started)
            if future.exception() is not None:
                errors += 1
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()
        slots.release()

    start = time.perf_counter()
    for i in range(calls):
        slots.acquire()
        began = time.perf_counter()
        future = make_call(stubs[i % len(stubs)])
        future.add_done_callback(lambda f, began=began: finished(began, f))
    done.wait()
    return time.perf_counter() - start, latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="msb-", dir="/tmp"))
    box = Sandbox(Path("/run/memsched-test") / f"bench{os.getpid()}", "bench")
    box.start(tie_to_parent=True)
    server = None
    try:
        env, memsched = install_jobs(box, work, args.jobs)
        sock = work / "grpc.sock"
        server = subprocess.Popen([*memsched, "serve", "--listen", f"unix:{sock}"], env=env, stderr=subprocess.DEVNULL)
        channels = [grpc.insecure_channel(f"unix:{sock}") for _ in range(args.channels)]
        grpc.channel_ready_future(channels[0]).result(timeout=30)
        health = health_pb2_grpc.HealthStub(channels[0])
        deadline = time.monotonic() + 30
        while True:
            try:
                health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        stubs = [pb_grpc.MemoryServiceStub(c) for c in channels]
        health_stubs = [health_pb2_grpc.HealthStub(c) for c in channels]
        cases = [
            ("GetSchedulerStatus", stubs, lambda s: s.GetSchedulerStatus.future(pb.GetSchedulerStatusRequest(), timeout=120)),
            ("GetJobHistory", stubs, lambda s: s.GetJobHistory.future(pb.GetJobHistoryRequest(job_name="job00"), timeout=120)),
            ("Health.Check", health_stubs, lambda s: s.Check.future(health_pb2.HealthCheckRequest(), timeout=120)),
        ]
        print(f"jobs installed: {args.jobs}; {args.calls} calls per case, {args.concurrency} in flight, {args.channels} channels")
        failed = 0
        for name, targets, call in cases:
            fire(targets, call, min(200, args.calls), args.concurrency)  # warm-up
            seconds, latencies, errors = fire(targets, call, args.calls, args.concurrency)
            failed += errors
            q = statistics.quantiles(latencies, n=100)
            print(f"  {name:20s} {args.calls / seconds:8.0f} calls/s   p50 {q[49] * 1000:6.1f} ms   p99 {q[98] * 1000:6.1f} ms   errors {errors}")
        for channel in channels:
            channel.close()
        if failed:
            raise SystemExit(f"{failed} calls failed")
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
        box.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
