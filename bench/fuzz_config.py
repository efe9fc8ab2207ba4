#!/usr/bin/env python3
"""Fuzz budget beyond CI's: the properties of tests/config_fuzz.py over many random inputs.

CI runs a fixed, derandomized budget (tests/test_fuzz_config.py). This runs the same
properties with fresh random inputs: generated configs (each accepted one rendered and read by
`systemd-analyze verify` in user and system scope), hostile TOML text and cron expressions
(each accepted one's OnCalendar= values parsed by `systemd-analyze calendar`). A violated
property stops the run and prints the falsifying input; otherwise it prints what it saw.

    .venv/bin/python bench/fuzz_config.py [--examples 3000] [--seed N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hypothesis import HealthCheck, given, settings, seed as hyp_seed  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import config_fuzz as fz  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3000, help="examples per property (default 3000)")
    parser.add_argument("--seed", type=int, default=None, help="a seed, to replay a run")
    args = parser.parse_args()
    checker = fz.checker_for()
    budget = settings(max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))

    def run(name: str, test) -> None:
        start = time.monotonic()
        if args.seed is not None:
            test = hyp_seed(args.seed)(test)
        test()
        print(f"{name:<22} {args.examples} examples in {time.monotonic() - start:6.1f} s")

    run("configs", budget(given(document=fz.configs())(checker.check_config)))
    run("plausible configs", budget(given(document=fz.plausible_configs())(checker.check_config)))
    run("hostile TOML text", budget(given(text=fz.raw_documents())(checker.check_document)))
    run("cron expressions", budget(given(expression=fz.cron_expressions, tz=st.sampled_from(["UTC", "Europe/Berlin", "Australia/Lord_Howe"]))(lambda expression, tz: checker.check_cron(expression, tz))))
    print("seen:", ", ".join(f"{k} {v}" for k, v in checker.counts.items()))
    print("no traceback, every refusal exit 2 naming its key, every accepted unit read by systemd without a word")
    return 0


if __name__ == "__main__":
    sys.exit(main())
