"""Property-based fuzzing of the config schema and cron expressions (issue 13).

The strategies and the properties are in tests/config_fuzz.py; this file runs them with a fixed,
derandomized budget so CI sees the same inputs every time. bench/fuzz_config.py runs the same
properties with a larger, random budget. Each accepted config is rendered and read by the real
``systemd-analyze verify`` (user and system scope); each accepted cron expression's OnCalendar=
values are parsed by the real ``systemd-analyze calendar``.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import config_fuzz as fz

BUDGET = int(os.environ.get("MEMSCHED_FUZZ_EXAMPLES", "120"))
FIXED = settings(
    max_examples=BUDGET,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def checker(tmp_path_factory):
    return fz.checker_for(tmp_path_factory.mktemp("fuzz"))


@FIXED
@given(document=fz.configs())
def test_generated_configs_keep_every_property(checker, document):
    checker.check_config(document)


@FIXED
@given(document=fz.plausible_configs())
def test_plausible_configs_keep_every_property(checker, document):
    """Mostly accepted configs: each one rendered and read by systemd-analyze verify without a word."""
    checker.check_config(document)


@FIXED
@given(text=fz.raw_documents())
def test_hostile_toml_text_is_refused_cleanly(checker, text):
    checker.check_document(text)


@FIXED
@given(expression=fz.cron_expressions, tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]))
def test_generated_cron_expressions_parse_in_systemd_or_are_refused(checker, expression, tz):
    checker.check_cron(expression, tz)


@settings(max_examples=BUDGET, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(document=fz.configs().filter(fz.parses))
def test_config_show_reads_back_as_the_same_config(document):
    """`config show` prints the effective config as TOML; read back as a config file it is the same config.

    It failed before: [store] busy_timeout and the other section durations were printed in
    milliseconds under a header saying "durations in seconds".
    """
    import tomllib

    from memsched.config.docs import effective_toml
    from memsched.config.load import parse_config

    import json

    from memsched.config.docs import effective_document, loadable

    from memsched.config.secrets import redacted

    first = parse_config(document)
    from_toml = parse_config(tomllib.loads(effective_toml(first)))
    from_json = parse_config(json.loads(json.dumps(loadable(effective_document(first)))))  # what --json prints
    # secrets are printed as [redacted] (issue 12.5): the same config but for them
    shown = {sect: {key: redacted(sect, key, value) for key, value in values.items()} for sect, values in first.settings.items()}
    for again in (from_toml, from_json):
        assert again.settings == shown
        assert {n: j.as_dict() for n, j in again.jobs.items()} == {n: j.as_dict() for n, j in first.jobs.items()}


def test_the_fuzzer_reaches_both_outcomes(checker):
    """Guards the budget: a fuzzer that only ever refuses (or only accepts) tests nothing."""
    from hypothesis import find

    accepted = find(fz.configs(), fz.parses, settings=settings(database=None, max_examples=2000, derandomize=True))
    refused = find(fz.configs(), lambda d: not fz.parses(d), settings=settings(database=None, max_examples=2000, derandomize=True))
    checker.check_config(accepted)
    checker.check_config(refused)
    assert checker.counts["accepted"] >= 1 and checker.counts["refused"] >= 1, checker.counts
