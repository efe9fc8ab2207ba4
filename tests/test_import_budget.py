"""The import budget of the hot paths (issue 11, fast start): which modules `memsched exec`
(every timer start), the overlap gate and `memsched status` may load. Not a timing: a list.

Each path runs for real, in a fresh interpreter, against the suite's private manager; the
modules loaded by the end are compared with what the path is allowed to need.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv
from test_units_install import install

# Run in a fresh interpreter: argv as the units give it to the `memsched` console script.
PROBE = """
import json, sys
sys.argv = ["memsched", *json.loads(sys.argv[1])]
from memsched.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
with open(__import__("os").environ["MODULES_OUT"], "w") as fh:
    json.dump({"code": code, "modules": sorted(sys.modules)}, fh)
"""

# Third-party packages nobody on these paths needs (each costs tens of ms to import).
HEAVY = ("click", "croniter", "dateutil", "jinja2", "markupsafe", "grpc", "grpc_health", "google", "tomli_w", "pytz")
# memsched modules a run's start must not load: the CLI framework's side, calendars predicted
# with croniter, unit rendering, the facade, and (for a command job) the store and summarizers.
NOT_ON_EXEC = (
    "memsched.cli.app", "memsched.cli.common", "memsched.cli.exec", "memsched.ops", "memsched.facade",
    "memsched.systemd.predict", "memsched.systemd.render", "memsched.systemd.install", "memsched.systemd.dst",
    "memsched.systemd.sandbox", "memsched.store", "memsched.summarize", "memsched.jobs.rollup", "memsched.jobs.compaction",
)
# status reads the store's verification state (memsched.jobs.verify, the store's schema), nothing that runs a job
NOT_ON_STATUS = (
    "memsched.facade", "memsched.systemd.predict", "memsched.systemd.render", "memsched.systemd.install",
    "memsched.systemd.dst", "memsched.summarize", "memsched.jobs.runner", "memsched.jobs.rollup",
    "memsched.jobs.compaction", "memsched.store.build", "memsched.store.segment",
)
# Third-party packages each path may load.
EXEC_THIRD_PARTY = {"pystemd", "cython_runtime", "sdnotify"}  # cython_runtime: pystemd is Cython
STATUS_THIRD_PARTY = {"click", "pystemd", "cython_runtime"}


def loaded(systemd: SystemdTestEnv, *argv: str) -> tuple[int, list[str]]:
    out = systemd.tmp / "modules.json"
    env = dict(systemd.env, MODULES_OUT=str(out))
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(argv))], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    return data["code"], data["modules"]


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _third_party(modules: list[str]) -> set[str]:
    stdlib = set(sys.stdlib_module_names)
    return {m.split(".")[0] for m in modules if m.split(".")[0] not in stdlib and not m.startswith(("memsched", "_"))}


def test_exec_and_the_gate_load_only_what_a_start_needs(systemd: SystemdTestEnv) -> None:
    jobs = {p: command_job(["/bin/true"], cron="0 0 1 1 *", overlap=p) for p in ("skip", "queue", "concurrent")}
    config = write_config(systemd.tmp, jobs)
    install(systemd, config)
    base = ["--user", "--config", str(config)]
    for argv in (
        [*base, "exec", "skip"],
        [*base, "exec", "--gate", "skip"],
        [*base, "exec", "queue"],
        [*base, "exec", "--spawn", "concurrent"],
        [*base, "exec", "concurrent", "--instance", "m-probe"],
    ):
        code, modules = loaded(systemd, *argv)
        assert code == 0, (argv, code)
        assert not [m for m in modules if _under(m, HEAVY)], (argv, [m for m in modules if _under(m, HEAVY)])
        assert not [m for m in modules if _under(m, NOT_ON_EXEC)], (argv, [m for m in modules if _under(m, NOT_ON_EXEC)])
        assert _third_party(modules) <= EXEC_THIRD_PARTY, (argv, _third_party(modules))
        assert "memsched.cli.fastexec" in modules and "memsched.jobs.runner" in modules  # the path did run


def test_exec_help_and_odd_forms_still_reach_click(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {"q": command_job(["/bin/true"], cron="0 0 1 1 *", overlap="queue")})
    code, modules = loaded(systemd, "--config", str(config), "exec", "--help")
    assert code == 0 and "click" in modules
    code, modules = loaded(systemd, "--config", str(config), "exec", "q", "--bogus")
    assert code == 2 and "click" in modules  # click's usage error, exit 2


def test_status_loads_no_calendar_prediction_templating_or_grpc(systemd: SystemdTestEnv) -> None:
    jobs = {f"j{i}": command_job(["/bin/true"], cron="0 0 1 1 *", overlap="queue") for i in range(3)}
    config = write_config(systemd.tmp, jobs)
    install(systemd, config)
    systemd.memsched("--config", str(config), "run", "j0", "--wait", check=True)
    for argv in (["--config", str(config), "status"], ["--config", str(config), "status", "--json"]):
        code, modules = loaded(systemd, *argv)
        assert code == 0, argv
        heavy = [m for m in modules if _under(m, HEAVY) and not _under(m, ("click",))]
        assert not heavy, (argv, heavy)
        assert not [m for m in modules if _under(m, NOT_ON_STATUS)], (argv, [m for m in modules if _under(m, NOT_ON_STATUS)])
        assert _third_party(modules) <= STATUS_THIRD_PARTY, (argv, _third_party(modules))
        assert "memsched.ops.status" in modules


def test_every_command_line_the_units_run_takes_the_fast_path(tmp_path: Path) -> None:
    import shlex

    from memsched.cli.fastexec import ExecArgs, parse_exec_argv
    from memsched.config.load import load_config
    from memsched.jobs import runner
    from memsched.ops.units import render

    jobs = {p: command_job(["/bin/true"], overlap=p) for p in ("skip", "queue", "concurrent")}
    config = load_config(write_config(tmp_path, jobs))
    seen = []
    for scope in ("user", "system"):
        for unit in render(config, scope, systemd_version=252):
            for line in unit.content.splitlines():
                key, _, value = line.partition("=")
                argv = [a.replace("%%", "%") for a in shlex.split(value)][1:] if key in ("ExecStart", "ExecCondition") else []
                if "exec" in argv:
                    parsed = parse_exec_argv(argv)
                    assert isinstance(parsed, ExecArgs) and parsed.job in jobs and parsed.scope_flag == scope, (unit.name, argv)
                    seen.append((parsed.as_gate, parsed.spawn, parsed.instance is not None))
    assert {(True, False, False), (False, True, False), (False, False, True), (False, False, False)} <= set(seen), seen
    # the fast path answers with the runner's own exit codes
    from memsched.cli import fastexec

    assert (fastexec._EXIT_FAILED, fastexec._EXIT_USAGE, fastexec._GATE_ERROR) == (runner.EXIT_FAILED, runner.EXIT_USAGE, runner.GATE_ERROR)
    for odd in (["exec"], ["exec", "--help"], ["exec", "a", "b"], ["exec", "--gate", "--spawn", "a"], ["--endpoint", "x", "exec", "a"], ["status"]):
        assert parse_exec_argv(odd) is None, odd
