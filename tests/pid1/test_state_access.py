"""Data and access safety in system scope, on systemd as PID 1 (issue 12): root's commands leave
the state the memsched user's (12.2), and an unprivileged user asking for --system status gets
what can be read, a clear message and a documented exit code (12.6)."""

from __future__ import annotations

from harness import Machine
from memsched.store.sample import generate_events, to_jsonl

STATE = "/var/lib/memsched"
ASIDE = "/root/state-aside"


def _events() -> str:
    return b"".join(to_jsonl(generate_events(1_767_225_600_000, 1, seed=5))).decode()


def _active_timers(machine: Machine) -> list[str]:
    out = machine.run(["systemctl", "list-units", "--type=timer", "--state=active", "--plain", "--no-legend", "memsched-*"], check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_root_commands_leave_every_state_file_the_service_users(machine: Machine) -> None:
    # From an empty state directory, so that root's commands are the ones creating the files.
    timers = _active_timers(machine)
    machine.run(["systemctl", "stop", *timers], check=True)
    machine.run(f"rm -rf {ASIDE} && mkdir {ASIDE} && find {STATE} -mindepth 1 -maxdepth 1 -exec mv -t {ASIDE} {{}} +", check=True)
    try:
        for cmd in (["memsched", "pause", "compaction"], ["memsched", "resume", "compaction"], ["memsched", "doctor"]):
            result = machine.run(cmd, timeout=120)
            assert result.returncode in (0, 1), (cmd, result.stdout, result.stderr)  # doctor may find drift: 1
            assert "internal error" not in result.stderr, (cmd, result.stderr)
        ingest = machine.run(["memsched", "ingest", "-"], input=_events(), timeout=120)
        assert ingest.returncode == 0, ingest.stderr
        machine.run(["test", "-f", f"{STATE}/registry.db", "-a", "-f", f"{STATE}/memory.db"], check=True)
        listing = machine.run(f"stat -c '%U:%G %n' {STATE}/*", check=True).stdout.splitlines()
        assert all(line.startswith("memsched:memsched ") for line in listing), listing
        # ... so the jobs, as memsched, still write both: a rollup reads the store and records its run.
        run = machine.run(["memsched", "run", "toc_rollup_day", "--wait"], timeout=300)
        assert run.returncode == 0, (run.stdout, run.stderr)
        status = machine.run(["memsched", "status", "--json", "toc_rollup_day"], check=True).json()
        assert status["jobs"][0]["last_result"] == "success", status  # type: ignore[index]
    finally:
        machine.run(f"rm -rf {STATE}/* && find {ASIDE} -mindepth 1 -maxdepth 1 -exec mv -t {STATE} {{}} + ; rmdir {ASIDE}", timeout=120)
        machine.run(["systemctl", "start", *timers], timeout=120)


def test_an_unprivileged_system_status_shows_what_it_can_and_says_what_to_do(machine: Machine) -> None:
    # /var/lib/memsched is 0750 memsched:memsched: the stranger may ask systemd, not read the registry.
    # The machine is shared: another test may have left the timer stopped. Its next elapse is
    # systemd's to report, so it must be running for the check below to mean anything.
    machine.run(["systemctl", "start", "memsched-toc_rollup_day.timer"], check=True)
    text = machine.run(["memsched", "--system", "status"], user="stranger")
    assert text.returncode == 4, (text.returncode, text.stdout, text.stderr)
    assert "internal error" not in text.stderr and "Traceback" not in text.stderr, text.stderr
    assert "sudo memsched --system status" in text.stderr and "--endpoint" in text.stderr, text.stderr
    rows = {line.split()[0]: line.split() for line in text.stdout.splitlines()[1:] if line.strip()}
    assert "toc_rollup_day" in rows and rows["toc_rollup_day"][1] in ("idle", "running", "stopped"), text.stdout
    as_json = machine.run(["memsched", "--system", "status", "--json"], user="stranger")
    assert as_json.returncode == 4, as_json.stderr
    answer = as_json.json()
    assert answer["registry_readable"] is False and answer["scheduler_running"] is True, answer  # type: ignore[index]
    day = next(j for j in answer["jobs"] if j["job_name"] == "toc_rollup_day")  # type: ignore[index]
    assert day["run_count"] is None and day["last_result"] is None and day["next_run_ms"] > 0, day
    assert day["late"] is None and day["late_after_ms"] is None, "lateness unknown without the registry, not \"not late\""
    history = machine.run(["memsched", "--system", "history", "toc_rollup_day"], user="stranger")
    assert history.returncode == 4 and "permission denied" in history.stderr and "internal error" not in history.stderr, history.stderr


FAKE_API = r'''
import http.server, json, sys
ANSWER = {"title": "Day work", "bullets": ["One thing", "Another thing", "A third thing"], "keywords": ["one", "two", "three"]}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open("/root/seen-authorization", "a") as fh:
            fh.write(self.headers.get("Authorization", "") + "\n")
        body = json.dumps({"choices": [{"message": {"content": json.dumps(ANSWER)}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", 18080), Handler).serve_forever()
'''


def test_the_api_key_reaches_the_jobs_as_a_credential_and_nothing_else(fresh_machine) -> None:  # type: ignore[no-untyped-def]
    """Issue 12.5 in system scope: the key is in a root-only file; the rollup, run as memsched under the
    hardening, sends it (PID 1 hands it over with LoadCredential=), while the memsched user cannot read the file."""
    m = fresh_machine("bookworm")
    key = "sk-pid1-credential-0123456789abcdef"
    (m.root / "root" / "fake_api.py").write_text(FAKE_API)
    m.run(f"umask 077 && printf '%s\\n' {key} > /etc/memsched/api-key", check=True)
    m.run(["systemd-run", "--unit=fake-api", "python3", "/root/fake_api.py"], check=True)
    config = ("[summarizer]\nkind = \"openai\"\napi_key_file = \"/etc/memsched/api-key\"\n"
              "base_url = \"http://127.0.0.1:18080/v1\"\nretries = 0\n")
    m.run("cat > /etc/memsched/memsched.toml", input=config, check=True)  # a fresh machine: the built-in jobs, this summarizer
    ingest = m.run(["memsched", "ingest", "-"], input=_events(), timeout=120)
    assert ingest.returncode == 0, ingest.stderr
    installed = m.run(["memsched", "install-units"], timeout=120)
    assert installed.returncode == 0, (installed.stdout, installed.stderr)
    unit = m.run(["systemctl", "cat", "memsched-toc_rollup_day.service"], check=True).stdout
    assert "LoadCredential=memsched-api-key:/etc/memsched/api-key" in unit, unit
    assert m.run(["cat", "/etc/memsched/api-key"], user="memsched").returncode != 0  # root's 0600 file
    run = m.run(["memsched", "run", "toc_rollup_day", "--wait"], timeout=300)
    assert run.returncode == 0, (run.stdout, run.stderr)
    seen = (m.root / "root" / "seen-authorization").read_text().split("\n")
    assert f"Bearer {key}" in seen, seen
    shown = m.run(["memsched", "config", "show"], check=True).stdout
    assert key not in shown and "api_key_file" in shown
    journal = m.run(["journalctl", "-b", "--no-pager", "-o", "cat"], check=True).stdout
    assert key not in journal
