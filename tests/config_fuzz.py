"""Generated configs and cron expressions, and the properties every one of them must keep.

Used by tests/test_fuzz_config.py (a fixed, derandomized budget in CI) and bench/fuzz_config.py
(a larger one). The properties, from issue 13:

* no traceback and no exit code besides 0 (accepted) and 2 (refused);
* a refusal names the key of every problem (``jobs.NAME.key: ...``, ``facade.listen: ...``);
* what ``validate`` accepts, ``render`` accepts (render never refuses what validate passed);
* every accepted config renders units that ``systemd-analyze verify`` reads without a word
  (no "ignoring", no warning), in user and in system scope;
* every OnCalendar= value of an accepted cron expression is one systemd parses.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import tomli_w
from click.testing import CliRunner
from hypothesis import strategies as st

from memsched.config import schema
from memsched.config.durations import DURATION_UNITS_MS
from memsched.config.load import parse_config
from memsched.errors import MemschedError

# ------------------------------------------------------------------ building blocks

# Characters a careless or hostile user types: quotes, escapes, specifiers, shell syntax,
# control characters, non-ASCII digits and letters, whitespace of every kind.
NASTY = list("\"'\\%$;&|`(){}[]<>*?!#~=:@,./- \t\n\r\x00\x1b\x7f") + ["٣", "é", "ü", "✓", "\u00a0", "\u2028", "\U0001f600"]
nasty_text = st.text(alphabet=st.one_of(st.sampled_from(NASTY), st.characters(codec="utf-8", exclude_categories=("Cs",))), max_size=40)
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12)

toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    nasty_text,
)
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(words, inner, max_size=3)), max_leaves=8)

duration_numbers = st.one_of(
    st.integers(0, 400 * 86400),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(0, 10**9).map(lambda ms: ms / 1000),
)
duration_units = st.sampled_from([*DURATION_UNITS_MS, "M", "us", "ns", "MIN", "S", "", "secs", "µs", "mo"])
duration_texts = st.lists(
    st.tuples(st.one_of(st.integers(0, 10**6).map(str), st.decimals(0, 10**5, places=4, allow_nan=False).map(str), st.just("9" * 30)), st.sampled_from(["", " "]), duration_units),
    min_size=1,
    max_size=3,
).map(lambda parts: " ".join(f"{n}{sep}{u}" for n, sep, u in parts))
durations = st.one_of(duration_numbers, duration_texts, nasty_text)

sizes = st.one_of(
    st.just("infinity"),
    st.tuples(st.integers(0, 2**66), st.sampled_from(["", ".5", ".25", ".000000001", ".1234567891"]), st.sampled_from(["", "K", "M", "G", "T", "P", "B", "k", " G"])).map(lambda t: f"{t[0]}{t[1]}{t[2]}"),
    st.tuples(st.integers(0, 200), st.sampled_from(["", ".0", ".5", ".01", ".001", ".99"])).map(lambda t: f"{t[0]}{t[1]}%"),
    st.sampled_from(["0", "0%", "101%", "18446744073709551615", "18446744073709551614", "99999999999999999999999T", "١٢", "1e3"]),
    nasty_text,
)
percents = st.one_of(
    st.tuples(st.integers(0, 3 * 10**7), st.sampled_from(["", ".0", ".5", ".01", ".001"])).map(lambda t: f"{t[0]}{t[1]}%"),
    st.sampled_from(["0%", "0.001%", "٥٠%", "50", "21474836.47%", "21474836.48%"]),
    nasty_text,
)
paths = st.one_of(
    st.lists(st.one_of(words, nasty_text, st.just(".."), st.just("."), st.just("x" * 256)), min_size=1, max_size=4).map(lambda p: "/" + "/".join(p)),
    words,
    st.just(""),
    nasty_text,
)
groups = st.one_of(words, st.sampled_from(["adm", "0", "65535", "4294967295", "-", "a;b", "$(x)", "a\\", "007", "x" * 32, "Ä"]), nasty_text, st.just(""))
listens = st.one_of(
    st.tuples(st.sampled_from(["127.0.0.1", "0.0.0.0", "[::1]", "[fe80::1%lo]", "localhost", "127.1", "::1", "10.0.0.1"]), st.integers(-1, 70000)).map(lambda t: f"tcp:{t[0]}:{t[1]}"),
    paths.map(lambda p: f"unix:{p}"),
    st.sampled_from(["http://x", "unix:", "tcp:", ""]),
    nasty_text,
)
argvs = st.one_of(st.lists(st.one_of(st.sampled_from(["/bin/true", "/usr/bin/env", ""]), nasty_text), max_size=4), toml_values)
crons_simple = st.sampled_from(["0 0 * * *", "*/5 * * * *", "0 0 1 * * *", "0 0 12 LW * ?", "@daily", "0 0 * * 1#2", "0 0 L-3 * ?", "0 15 10 ? * 6L 2030-2040"])


def _field_items() -> st.SearchStrategy[str]:
    number = st.one_of(st.integers(0, 99).map(str), st.just("9" * 40), st.sampled_from(["٣", "JAN", "MON", "sun", "L", "W", "LW", "?", "*", "L-3", "15W", "5L", "2#3", "H", "R"]))
    item = st.one_of(
        number,
        st.tuples(number, number).map(lambda t: f"{t[0]}-{t[1]}"),
        st.tuples(st.sampled_from(["*", "0", "1-5", "10"]), st.integers(-1, 100)).map(lambda t: f"{t[0]}/{t[1]}"),
    )
    return st.lists(item, min_size=1, max_size=3).map(",".join)


cron_expressions = st.one_of(
    crons_simple,
    st.lists(_field_items(), min_size=4, max_size=8).map(" ".join),
    st.sampled_from(["@hourly", "@weekly", "@monthly", "@yearly", "@annually", "@reboot", "@every 5m", "@midnight"]),
    nasty_text,
)


def value_for(option: schema.Option) -> st.SearchStrategy[object]:
    """Values for one key: mostly of its kind (valid and nearly valid), sometimes anything TOML has."""
    by_type: dict[str, st.SearchStrategy[object]] = {
        "duration": durations,
        "size": sizes,
        "percent": percents,
        "path": paths,
        "group": groups,
        "listen": listens,
        "argv": argvs,
        "cron": cron_expressions,
        "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Europe/Dublin", "localtime", "posix/UTC", "Nowhere/City", "../../etc/passwd", "UTC\n"]),
        "boolean": st.booleans(),
        "integer": st.one_of(st.integers(-30, 1100), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
        "enum": st.sampled_from(list(option.choices) + ["", "SKIP", "nope"]),
        "url": st.one_of(st.sampled_from(["http://127.0.0.1:9/v1", "https://api.example.org", "ftp://x", "https://"]), nasty_text),
        "envvar": st.one_of(st.sampled_from(["OPENAI_API_KEY", "MY_KEY", "1BAD", "A-B"]), nasty_text),
    }
    typed = by_type.get(option.type, nasty_text)
    return st.one_of(typed, typed, typed, toml_values)


def _table(options: tuple[schema.Option, ...], fixed: dict[str, object] | None = None) -> st.SearchStrategy[dict[str, object]]:
    keys = st.lists(st.sampled_from([o.key for o in options] + ["unknown_key"]), unique=True, max_size=6)

    def build(chosen: list[str]) -> st.SearchStrategy[dict[str, object]]:
        known = {o.key: o for o in options}
        parts = {k: value_for(known[k]) if k in known else toml_values for k in chosen}
        return st.fixed_dictionaries(parts).map(lambda d: {**d, **(fixed or {})})

    return keys.flatmap(build)


job_names = st.one_of(words, st.sampled_from(["grpc", "x\n", "a.b", "-x", "x" * 65, "toc_rollup_day", "compaction", "ünï"]), nasty_text)
command_jobs = _table(schema.JOB_OPTIONS, {"kind": "command", "command": ["/bin/true"], "cron": "0 0 * * *"})
any_jobs = _table(schema.JOB_OPTIONS)


@st.composite
def configs(draw: Callable, registry_dir: str = "/tmp/memsched-fuzz") -> dict[str, object]:
    """A config document: some sections with some keys, a few jobs; the built-in jobs mostly off (faster to verify)."""
    document: dict[str, object] = {}
    for sect in schema.SECTIONS:
        if draw(st.integers(0, 3)) == 0:
            document[sect.name] = draw(_table(sect.options))
    if draw(st.integers(0, 9)) == 0:
        document[draw(words)] = draw(toml_values)  # an unknown table
    jobs: dict[str, object] = {}
    if draw(st.booleans()):
        jobs.update({name: {"enabled": False} for name in schema.DEFAULT_JOBS})
    for _ in range(draw(st.integers(0, 3))):
        name = draw(job_names)
        jobs[name] = draw(st.one_of(command_jobs, command_jobs, any_jobs, toml_values))
    document["jobs"] = jobs if draw(st.integers(0, 19)) else draw(toml_values)
    registry = document.get("registry")
    if not isinstance(registry, dict) or "path" not in registry:
        document["registry"] = {**(registry if isinstance(registry, dict) else {}), "path": f"{registry_dir}/registry.db"}
    return document


# Plausible values: what a careful user writes. Configs of these are mostly accepted, so the
# properties on accepted configs (render never refuses, systemd reads every unit silently) see
# thousands of real configs, not the few that random values let through.
plain_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=10)
plausible_paths = st.lists(st.one_of(plain_words, st.sampled_from(["my data", "ünï", "a'b", "x$y", "%h", "a\\b"])), min_size=1, max_size=3).map(lambda p: "/var/tmp/" + "/".join(p))
PLAUSIBLE: dict[str, st.SearchStrategy[object]] = {
    "duration": st.one_of(st.integers(0, 86400), st.sampled_from(["5min", "1h 30min", "250ms", "2d", "1w", "0", "90s", "1.5s"])),
    "size": st.one_of(st.sampled_from(["infinity", "512M", "2G", "1K", "50%", "99.5%", "100%"]), st.integers(1, 2**40).map(str)),
    "percent": st.one_of(st.integers(1, 400).map(lambda n: f"{n}%"), st.sampled_from(["0.5%", "12.25%"])),
    "path": plausible_paths,
    "group": st.sampled_from(["adm", "memsched", "0", "1000", "staff"]),
    "listen": st.one_of(plausible_paths.map(lambda p: f"unix:{p}.sock"), st.integers(1024, 65535).map(lambda n: f"tcp:127.0.0.1:{n}")),
    "argv": st.lists(st.one_of(plain_words, st.sampled_from(["%h", "$HOME", "a b", "'q'", '"dq"', "\\", ";", "--x=1"])), max_size=3).map(lambda a: ["/bin/true", *a]),
    "cron": crons_simple,
    "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Europe/Dublin", "Asia/Kolkata"]),
    "boolean": st.booleans(),
    "url": st.sampled_from(["http://127.0.0.1:9/v1", "https://api.example.org/v1"]),
    "envvar": st.sampled_from(["OPENAI_API_KEY", "MY_KEY", "_K2"]),
    "description": st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=60).map(str.strip).filter(bool),
    "string": plain_words,
}


def plausible_value(option: schema.Option) -> st.SearchStrategy[object]:
    """A value a careful user would write for this key (still including quotes, %, $, spaces)."""
    if option.type == "enum":
        return st.sampled_from(list(option.choices))
    if option.type == "integer":
        return st.integers(option.minimum if option.minimum is not None else 0, option.maximum if option.maximum is not None else 1000)
    return PLAUSIBLE.get(option.type, plain_words)


def _plausible_table(options: tuple[schema.Option, ...], fixed: dict[str, object], skip: tuple[str, ...] = ()) -> st.SearchStrategy[dict[str, object]]:
    usable = [o for o in options if o.key not in fixed and o.key not in skip]
    keys = st.lists(st.sampled_from([o.key for o in usable]), unique=True, max_size=8)
    known = {o.key: o for o in usable}
    return keys.flatmap(lambda chosen: st.fixed_dictionaries({k: plausible_value(known[k]) for k in chosen}).map(lambda d: {**d, **fixed}))


@st.composite
def plausible_configs(draw: Callable, registry_dir: str = "/tmp/memsched-fuzz") -> dict[str, object]:
    """A config a careful user writes: command jobs with many keys set, some sections filled in."""
    document: dict[str, object] = {}
    for sect in schema.SECTIONS:
        if sect.name in ("facade", "summarizer", "registry") or draw(st.booleans()):
            continue  # the facade and API summarizer need files and keys; their rules have their own tests
        document[sect.name] = draw(_plausible_table(sect.options, {}))
    jobs: dict[str, object] = {name: {"enabled": False} for name in schema.DEFAULT_JOBS}
    command_only = tuple(o.key for o in schema.JOB_OPTIONS if o.kinds and "command" not in o.kinds)
    for name in draw(st.lists(plain_words, min_size=1, max_size=3, unique=True)):
        jobs[f"j{name}"] = draw(_plausible_table(schema.JOB_OPTIONS, {"kind": "command", "command": ["/bin/true"], "cron": draw(crons_simple)}, skip=command_only + ("command",)))
    document["jobs"] = jobs
    document["registry"] = {"path": f"{registry_dir}/registry.db"}
    return document


def raw_documents() -> st.SearchStrategy[str]:
    """TOML text a hostile user could write: deep nesting, huge numbers, broken syntax."""
    return st.one_of(
        st.integers(1, 2000).map(lambda n: "a = " + "[" * n + "]" * n),
        st.integers(1, 800).map(lambda n: "x = " + "{ a = " * n + "1" + " }" * n),
        st.integers(1, 6000).map(lambda n: f"[jobs.x]\nkind = \"command\"\ncron = \"0 0 * * *\"\ncommand = [\"/bin/true\"]\njitter = {'1' * n}"),
        st.sampled_from(["[jobs\n", "\xff", "jobs = 1", "[jobs.x]\njitter = 1e400", "[facade]\nlisten = \"unix:/run/a\\u0000b\""]),
        nasty_text,
    )


# ------------------------------------------------------------------ the properties

KEY_OF_PROBLEM = re.compile(r"^  (?:error: )?((?:jobs|" + "|".join(s.name for s in schema.SECTIONS) + r")\b[^:]*|[^ :]+): ", re.M)


class Checker:
    """Runs one input through memsched and checks the properties; counts what it saw."""

    def __init__(self, work: Path):
        self.work = work
        self.counts = {"accepted": 0, "refused": 0, "units_verified": 0, "calendars_checked": 0}
        self.verify_env = {"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(work), "SYSTEMD_LOG_LEVEL": "notice", "HOME": str(work)}

    def _invoke(self, *args: str) -> object:
        from memsched.cli import cli

        env = {"MEMSCHED_SCOPE": "user", "XDG_RUNTIME_DIR": str(self.work / "no-runtime"), "MEMSCHED_CONFIG": ""}
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=True)

    def check_document(self, text: str) -> None:
        """The whole chain on a config file's text: validate, then render and verify when accepted."""
        path = self.work / "memsched.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        result = self._invoke("validate", "--config", str(path))
        output = result.output  # type: ignore[attr-defined]
        exc = result.exception  # type: ignore[attr-defined]
        assert exc is None or isinstance(exc, SystemExit), f"traceback: {exc!r}\n{text[:500]}"
        assert "internal error" not in output and "Traceback" not in output, output
        code = result.exit_code  # type: ignore[attr-defined]
        assert code in (0, 2), (code, output, text[:500])
        if code == 2:
            self.counts["refused"] += 1
            assert KEY_OF_PROBLEM.search(output) or "not valid" in output or "nested too deeply" in output, f"refusal names no key:\n{output}"
            return
        self.counts["accepted"] += 1
        from memsched.config.load import load_config

        config = load_config(path)
        for scope in ("user", "system"):
            self.verify(config, scope)

    def check_config(self, document: dict[str, object]) -> None:
        try:
            text = tomli_w.dumps(document)
        except (TypeError, ValueError):  # not representable as TOML (e.g. a NUL in a key): nothing a user could write
            return
        self.check_document(text)

    def verify(self, config: object, scope: str) -> None:
        """Render (must not refuse: validate accepted) and have systemd-analyze verify read every unit silently."""
        from memsched.ops.units import render

        units = render(config, scope, 252)  # type: ignore[arg-type]
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            directory = Path(tmp)
            targets = []
            for unit in units:
                (directory / unit.name).write_text(unit.content)
                if unit.name.endswith("@.service"):
                    instance = directory / unit.name.replace("@.", "@fuzz.")
                    instance.symlink_to(unit.name)
                    targets.append(str(instance))
                else:
                    targets.append(str(directory / unit.name))
            args = ["systemd-analyze", "--man=no", *(["--user"] if scope == "user" else []), "verify", *targets]
            proc = subprocess.run(args, capture_output=True, text=True, env=self.verify_env, cwd=directory, timeout=120)
            assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", (scope, proc.stderr, [u.content for u in units][:3])
        self.counts["units_verified"] += len(units)

    def check_cron(self, expression: str, tz: str = "UTC") -> None:
        """A cron expression alone: refused as bad input, or every OnCalendar= value parses in systemd."""
        from memsched.cron.calendar import to_on_calendar
        from memsched.cron.parse import parse_cron

        try:
            values = to_on_calendar(parse_cron(expression), tz)
        except MemschedError as exc:
            assert exc.exit_code == 2 and exc.message, expression
            self.counts["refused"] += 1
            return
        proc = subprocess.run(["systemd-analyze", "calendar", "--iterations=1", *values], capture_output=True, text=True, env=self.verify_env, timeout=60)
        assert proc.returncode == 0 and "Failed" not in proc.stderr, (expression, values, proc.stderr)
        self.counts["calendars_checked"] += len(values)
        result = self._invoke("calendar", expression, "--tz", tz)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception  # type: ignore[attr-defined]
        assert result.exit_code == 0 and result.output.splitlines() == values, (result.output, values)  # type: ignore[attr-defined]


def finite(value: object) -> bool:
    return not (isinstance(value, float) and not math.isfinite(value))


def checker_for(base: Path | None = None) -> Checker:
    work = Path(tempfile.mkdtemp(prefix="memsched-fuzz-", dir=base or os.environ.get("TMPDIR", "/tmp")))
    return Checker(work)


def parses(document: dict[str, object]) -> bool:
    """True when the config loads (for filtering, in the round-trip tests)."""
    try:
        parse_config(document)
        return True
    except MemschedError:
        return False
