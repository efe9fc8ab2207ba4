"""The one config schema: every key's type, default and description.

Validation (``memsched.config.load``), ``memsched config defaults`` and the
generated reference ``docs/config.md`` all read this module, so the three
cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

JOB_KINDS = ("rollup", "compaction", "verify", "command")
ROLLUP_LEVELS = ("day", "week", "month", "year")
OVERLAP_POLICIES = ("skip", "queue", "concurrent")
IO_CLASSES = ("idle", "best-effort", "realtime")

# Job names become unit names verbatim (memsched-<job>.timer), so they are
# limited to characters that need no escaping in unit names or shells.
JOB_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"  # matched whole (re.fullmatch): "$" would let a final newline in
JOB_NAME_RULE = (
    "letters, digits, '_' and '-', starting with a letter or digit, at most 64 characters "
    "(it becomes the unit name memsched-<job>.timer)"
)


@dataclass(frozen=True)
class Option:
    """One config key.

    ``type`` is one of: string, description, path, url, envvar, group, listen,
    integer, boolean, duration, enum, argv, cron, timezone, size, percent; the rule
    of each is in :mod:`memsched.config.values` (durations: :mod:`memsched.config.durations`).
    ``default`` is the parsed default (None = unset); ``default_doc`` describes a
    computed default for the docs. ``kinds`` limits a job key to some job kinds.
    ``minimum``/``maximum`` bound an integer, or a duration (in milliseconds).
    ``relative`` lets a path be relative; ``empty`` lets an argv be empty.
    """

    key: str
    type: str
    description: str
    default: object = None
    default_doc: str | None = None
    choices: tuple[str, ...] = ()
    kinds: tuple[str, ...] | None = None
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None
    example: object = None
    relative: bool = False
    empty: bool = False


@dataclass(frozen=True)
class Section:
    """A top-level table of the config file."""

    name: str
    description: str
    options: tuple[Option, ...] = field(default_factory=tuple)


JOB_OPTIONS: tuple[Option, ...] = (
    Option(
        "kind",
        "enum",
        "What the job does: `rollup` summarises closed periods of one TOC level, `compaction` "
        "compacts the memory store (and checks what was added since its last run), `verify` checks "
        "the whole store, resuming where a stopped run left off, `command` runs an argv (other "
        "maintenance, tests). See docs/store.md.",
        choices=JOB_KINDS,
        required=True,
        default_doc="required for jobs that are not built in",
    ),
    Option(
        "cron",
        "cron",
        "When the job runs: a cron expression (5 fields, 6 with seconds first, 7 with a year last, "
        "or @daily-style macros). Translated to exact OnCalendar= lines; see docs/concepts.md.",
        required=True,
        default_doc="required for jobs that are not built in",
        example="0 0 1 * * *",
    ),
    Option(
        "timezone",
        "timezone",
        "IANA time zone the cron expression is read in (OnCalendar=... <zone>).",
        default="UTC",
    ),
    Option(
        "jitter",
        "duration",
        "Random delay added to each run, so jobs of many machines do not start at once "
        "(RandomizedDelaySec=). It is not counted in the run's duration. jitter + accuracy must not be "
        "longer than the shortest gap between the job's slots (`memsched validate` checks), or slots are lost.",
        default=0,
    ),
    Option(
        "fixed_random_delay",
        "boolean",
        "Keep the random delay the same for every run of this job on this machine (FixedRandomDelay=).",
        default=False,
    ),
    Option(
        "accuracy",
        "duration",
        "How late systemd may coalesce the timer to save wake-ups (AccuracySec=). "
        "systemd's own default is 1min; memsched is precise by default. See jitter for its limit.",
        default=1000,
    ),
    Option(
        "overlap",
        "enum",
        "What happens when a run is due while the previous one still runs: `skip` the slot "
        "(recorded as skipped), `queue` one run right after (systemd's own behaviour), or run "
        "`concurrent`ly as a separate unit instance.",
        choices=OVERLAP_POLICIES,
        default="skip",
    ),
    Option(
        "timeout",
        "duration",
        "Longest a run may take before systemd stops it (TimeoutStartSec=). A rollup, compaction or verify run "
        "still making progress near the limit is given more time (EXTEND_TIMEOUT_USEC=), up to twice this.",
        default=1_800_000,
    ),
    Option(
        "catch_up",
        "boolean",
        "Run once at boot or resume when a scheduled time was missed while the machine was "
        "off or asleep (Persistent=).",
        default=True,
    ),
    Option(
        "enabled",
        "boolean",
        "Whether the job is installed at all. A disabled job has no units; to stop a job for a "
        "while, use `memsched pause` instead.",
        default=True,
    ),
    Option(
        "description",
        "description",
        "Human description shown by systemctl (Description=): at most 2048 bytes, no leading or trailing space.",
        default="",
        default_doc="generated from the job's kind",
    ),
    Option(
        "level",
        "enum",
        "The TOC level a rollup job summarises.",
        choices=ROLLUP_LEVELS,
        kinds=("rollup",),
        required=True,
        default_doc="required for rollup jobs",
    ),
    Option(
        "min_age",
        "duration",
        "A period is rolled up once it has been closed this long (end <= now - min_age).",
        kinds=("rollup",),
        default_doc="1h for every level (so a period is rolled at the first run after it closes)",
    ),
    Option(
        "command",
        "argv",
        "The program and arguments a command job runs, as a list of strings. No shell is involved.",
        kinds=("command",),
        required=True,
        default_doc="required for command jobs",
        example=["/usr/bin/true"],
    ),
    Option(
        "nice",
        "integer",
        "CPU scheduling niceness of runs (Nice=), -20 to 19.",
        minimum=-20,
        maximum=19,
        default_doc="10 for compaction and verify, unset otherwise",
    ),
    Option(
        "io_class",
        "enum",
        "I/O scheduling class of runs (IOSchedulingClass=).",
        choices=IO_CLASSES,
        default_doc="idle for compaction and verify, unset otherwise",
    ),
    Option(
        "memory_max",
        "size",
        "Hard memory limit of a run (MemoryMax=): bytes with an optional K, M, G or T suffix, "
        "a percentage of RAM, or infinity.",
        default_doc="unset",
        example="512M",
    ),
    Option(
        "cpu_quota",
        "percent",
        "CPU time limit of a run (CPUQuota=), as a percentage of one CPU (200% = two CPUs).",
        default_doc="unset",
        example="50%",
    ),
)

LEVEL_MIN_AGE_MS = {"day": 3_600_000, "week": 3_600_000, "month": 3_600_000, "year": 3_600_000}
KIND_DEFAULTS: dict[str, dict[str, object]] = {
    "compaction": {"nice": 10, "io_class": "idle"},
    "verify": {"nice": 10, "io_class": "idle"},
}

# The original scheduler's jobs (all UTC, cron with seconds first), plus the
# year rollup it defined but never scheduled.
DEFAULT_JOBS: dict[str, dict[str, object]] = {
    "toc_rollup_day": {
        "kind": "rollup",
        "level": "day",
        "cron": "0 0 1 * * *",
        "jitter": 300_000,
        "timeout": 1_800_000,
    },
    "toc_rollup_week": {
        "kind": "rollup",
        "level": "week",
        "cron": "0 0 2 * * 1",
        "jitter": 300_000,
        "timeout": 1_800_000,
    },
    "toc_rollup_month": {
        "kind": "rollup",
        "level": "month",
        "cron": "0 0 3 1 * *",
        "jitter": 300_000,
        "timeout": 1_800_000,
    },
    "toc_rollup_year": {
        "kind": "rollup",
        "level": "year",
        "cron": "0 0 5 1 1 *",
        "jitter": 300_000,
        "timeout": 1_800_000,
    },
    "compaction": {
        "kind": "compaction",
        "cron": "0 0 4 * * 0",
        "jitter": 600_000,
        "timeout": 3_600_000,
    },
    # The whole store, monthly, after the month and year rollups. It reads every page
    # (minutes for a year of events on slow disks) and resumes where a stopped run left off.
    "store_verify": {
        "kind": "verify",
        "cron": "0 0 6 1 * *",
        "jitter": 600_000,
        "timeout": 14_400_000,
    },
}

SECTIONS: tuple[Section, ...] = (
    Section(
        "registry",
        "The run registry: memsched's own record of every run (start, end, result, counts), "
        "pauses and installed units. It outlives reboots.",
        (
            Option(
                "path",
                "path",
                "Registry database file (an absolute path). Empty: $XDG_STATE_HOME/memsched/registry.db (user scope) "
                "or /var/lib/memsched/registry.db (system scope).",
                default="",
            ),
        ),
    ),
    Section(
        "store",
        "The memory store: one SQLite file (WAL mode) holding events, the TOC and rollup checkpoints. "
        "See docs/store.md.",
        (
            Option(
                "path",
                "path",
                "Store database file (`~` expanded; a relative path is relative to the config file's "
                "directory). Empty: $XDG_DATA_HOME/memsched/memory.db (user scope) or "
                "/var/lib/memsched/memory.db (system scope).",
                default="",
                relative=True,
            ),
            Option(
                "busy_timeout",
                "duration",
                "Longest a process waits in total for another one's lock on the store (ingest, rollup, "
                "compaction share it) before failing with a clear error. 0: do not wait. At most 1 day "
                "(SQLite's busy timeout is a 32-bit count of milliseconds).",
                default=30_000,
                maximum=86_400_000,
            ),
        ),
    ),
    Section(
        "summarizer",
        "What writes the summaries of rolled-up periods. Segments are always summarised locally "
        "at build time (deterministic, offline); see docs/store.md.",
        (
            Option(
                "kind",
                "enum",
                "`local`: extractive, deterministic, no network. `openai`: any OpenAI-compatible chat "
                "completions API. `anthropic`: the Anthropic messages API.",
                choices=("local", "openai", "anthropic"),
                default="local",
            ),
            Option(
                "model",
                "string",
                "Model name sent to the API. Empty: gpt-4o-mini (openai) or claude-3-5-haiku-latest (anthropic).",
                default="",
            ),
            Option(
                "base_url",
                "url",
                "API base URL. Empty: https://api.openai.com/v1 (openai; requests go to <base_url>/chat/completions) "
                "or https://api.anthropic.com (anthropic; requests go to <base_url>/v1/messages).",
                default="",
            ),
            Option(
                "api_key",
                "string",
                "API key. Prefer api_key_file (or the variable api_key_env names), so the key stays out of the "
                "config file; a key here is refused when others may read the config file (chmod 600 it). "
                "`config show` prints it as [redacted].",
                default="",
            ),
            Option(
                "api_key_file",
                "path",
                "File holding the API key (its first line), readable only by its owner (0600; a file others "
                "may read is refused). In system scope it may be root's: install-units gives it to the jobs as the "
                "systemd credential memsched-api-key (LoadCredential=), so the jobs' user never reads the file "
                "itself. Takes precedence over api_key and api_key_env.",
                default="",
            ),
            Option(
                "api_key_env",
                "envvar",
                "Environment variable holding the API key when api_key is empty. Empty: OPENAI_API_KEY "
                "(openai) or ANTHROPIC_API_KEY (anthropic).",
                default="",
            ),
            Option(
                "timeout",
                "duration",
                "Deadline of one API request, from connecting to the answer's last byte (an answer still "
                "arriving then is abandoned as timed out, and retried).",
                default=60_000,
            ),
            Option(
                "retries",
                "integer",
                "Retries of a failed API request (connection errors, timeouts, answers cut off mid-way, "
                "HTTP 408/429/5xx, answers that are not the JSON asked for or larger than 1 MiB), with "
                "exponential backoff from 1s.",
                default=3,
                minimum=0,
                maximum=10,
            ),
        ),
    ),
    Section(
        "metrics",
        "Prometheus metrics for node_exporter's textfile collector, rewritten atomically after every run.",
        (
            Option(
                "textfile",
                "path",
                "File to write (an absolute path, e.g. /var/lib/prometheus/node-exporter/memsched.prom). Empty: no metrics.",
                default="",
            ),
        ),
    ),
    Section(
        "alerts",
        "What happens when a run fails: the memsched-failure@.service unit records the failure and "
        "runs this command, so you can wire mail, a desktop notification or a webhook. And the "
        "thresholds of the shipped Prometheus rules, written into the metrics (docs/metrics.md).",
        (
            Option(
                "on_failure",
                "argv",
                "Program and arguments to run on a failed run (no shell). Its environment holds MEMSCHED_JOB, "
                "MEMSCHED_INVOCATION_ID, MEMSCHED_RESULT, MEMSCHED_EXIT_STATUS, MEMSCHED_REASON and "
                "MEMSCHED_LOG (the run's last log lines). Empty: only record and log the failure.",
                default=(),
                default_doc="empty (no command)",
                empty=True,
            ),
            Option(
                "log_lines",
                "integer",
                "How many of the run's last log lines MEMSCHED_LOG carries.",
                default=20,
                minimum=0,
                maximum=1000,
            ),
            Option(
                "timeout",
                "duration",
                "Longest the alert command may run.",
                default=60_000,
            ),
            Option(
                "late_grace",
                "duration",
                "How long past its expected interval (the longest gap of its calendar, plus its random delay, "
                "accuracy and longest run) a job may go without a successful run before it is late: in "
                "`memsched status` and in the shipped Prometheus rule MemschedJobLate. See docs/metrics.md.",
                default=300_000,
            ),
            Option(
                "paused_after",
                "duration",
                "How long a job may stay paused before the Prometheus rule MemschedJobPausedTooLong fires.",
                default=86_400_000,
            ),
            Option(
                "lost_slots",
                "integer",
                "The rule MemschedJobLostSlots fires when more slots than this were lost in 24 hours.",
                default=0,
                minimum=0,
                maximum=1_000_000,
            ),
            Option(
                "skipped_slots",
                "integer",
                "The rule MemschedJobSkippedSlots fires when more slots than this were skipped by the job's "
                "own policy (overlap, coalesced) in 24 hours.",
                default=3,
                minimum=0,
                maximum=1_000_000,
            ),
        ),
    ),
    Section(
        "facade",
        "The gRPC facade (`memsched serve`): the original daemon's MemoryService scheduler calls "
        "(GetSchedulerStatus, PauseJob, ResumeJob) plus RunJob and GetJobHistory, socket-activated "
        "by systemd (memsched-grpc.socket) and gone again when idle. See docs/facade.md.",
        (
            Option(
                "enabled",
                "boolean",
                "Install memsched-grpc.socket and memsched-grpc.service with `memsched install-units` "
                "(and enable and start the socket).",
                default=False,
            ),
            Option(
                "listen",
                "listen",
                "Where to listen: `unix:PATH` or `tcp:HOST:PORT`, HOST an IP address (`127.0.0.1`, `[::1]`: "
                "systemd's ListenStream= takes no host names). Empty: the unix socket "
                "$XDG_RUNTIME_DIR/memsched/grpc.sock (user scope) or /run/memsched/grpc.sock (system scope). "
                "TCP needs token_file; an address that is not loopback also needs allow_remote.",
                default="",
            ),
            Option(
                "allow_remote",
                "boolean",
                "Allow a TCP address that is not loopback (callers then need the token of token_file). Needs "
                "tls_cert_file and tls_key_file: the token must not cross the network in clear.",
                default=False,
            ),
            Option(
                "tls_cert_file",
                "path",
                "PEM certificate (chain) the TCP facade presents: TCP is then TLS (1.2 or later, ALPN h2), and "
                "the bearer token travels encrypted. Needs tls_key_file. Clients trust it with "
                "$MEMSCHED_TLS_CA_FILE. Required with allow_remote.",
                default="",
            ),
            Option(
                "tls_key_file",
                "path",
                "PEM private key of tls_cert_file; must not be readable by others.",
                default="",
            ),
            Option(
                "token_file",
                "path",
                "File holding the bearer token TCP callers must send (`authorization: Bearer TOKEN`). "
                "Required for TCP; not used on the unix socket.",
                default="",
            ),
            Option(
                "group",
                "group",
                "A group whose members may pause, resume and run jobs over the unix socket (besides the "
                "service's own user and root); it also becomes the socket's group (mode 0660). Empty: none.",
                default="",
            ),
            Option(
                "idle_timeout",
                "duration",
                "Exit after this long without a call or traffic, so nothing stays resident; the socket "
                "starts the service again on the next connection. 0: never exit.",
                default=60_000,
            ),
            Option(
                "watchdog",
                "duration",
                "WatchdogSec= of memsched-grpc.service: systemd restarts the server when it stops "
                "answering for this long. 0: no watchdog.",
                default=30_000,
            ),
            Option(
                "drain_timeout",
                "duration",
                "On stop (SIGTERM) or idle exit, how long calls in flight may take to finish.",
                default=10_000,
            ),
        ),
    ),
)
"""Top-level tables besides [jobs]; each feature that needs settings adds its section here."""


def job_option(key: str) -> Option | None:
    """Return the job option named ``key``, or None."""
    return next((o for o in JOB_OPTIONS if o.key == key), None)


def section(name: str) -> Section | None:
    """Return the top-level section named ``name``, or None."""
    return next((s for s in SECTIONS if s.name == name), None)
