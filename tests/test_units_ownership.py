"""A unit file without memsched's header is never overwritten or deleted, even under a name the
registry records as memsched's (issue 12, item 4): install-units and uninstall-units refuse with a
conflict, exit 2, and change nothing; --force replaces or deletes it. Against the real manager."""

from __future__ import annotations

import json

from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv

HAND_MADE = "[Unit]\nDescription=mine now\n\n[Service]\nType=oneshot\nExecStart=/bin/true\n"


def test_a_hand_replaced_unit_is_a_conflict_not_an_update(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {"alpha": command_job(["/bin/true"], cron="0 * * * *")})
    assert systemd.memsched("install-units", "--config", str(config)).returncode == 0
    service = systemd.unit_dir / "memsched-alpha.service"
    timer_text = (systemd.unit_dir / "memsched-alpha.timer").read_text()
    service.write_text(HAND_MADE)
    config = write_config(systemd.tmp, {"alpha": command_job(["/bin/true"], cron="15 * * * *")})
    refused = systemd.memsched("install-units", "--config", str(config))
    assert refused.returncode == 2 and str(service) in refused.stderr and "--force" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert service.read_text() == HAND_MADE and (systemd.unit_dir / "memsched-alpha.timer").read_text() == timer_text, "nothing changed"
    dry = systemd.memsched("install-units", "--config", str(config), "--dry-run")
    assert dry.returncode == 2
    doctor = systemd.memsched("doctor", "--config", str(config))
    assert doctor.returncode == 1 and "memsched does not own it" in doctor.stdout
    forced = systemd.memsched("install-units", "--config", str(config), "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    entry = next(u for u in json.loads(forced.stdout)["units"] if u["name"] == "memsched-alpha.service")
    assert entry["action"] == "update" and "--force" in entry["note"]
    assert service.read_text().startswith("# Managed by memsched")


def test_a_hand_replaced_unit_of_a_removed_job_is_not_deleted(systemd: SystemdTestEnv) -> None:
    jobs = {"alpha": command_job(["/bin/true"], cron="0 * * * *"), "beta": command_job(["/bin/true"], cron="0 * * * *")}
    assert systemd.memsched("install-units", "--config", str(write_config(systemd.tmp, jobs))).returncode == 0
    beta = systemd.unit_dir / "memsched-beta.service"
    beta.write_text(HAND_MADE)
    del jobs["beta"]
    config = write_config(systemd.tmp, jobs)
    refused = systemd.memsched("install-units", "--config", str(config))
    assert refused.returncode == 2 and str(beta) in refused.stderr, refused.stderr
    assert beta.read_text() == HAND_MADE and (systemd.unit_dir / "memsched-beta.timer").exists(), "nothing changed"
    uninstall = systemd.memsched("uninstall-units", "--config", str(config))
    assert uninstall.returncode == 2 and beta.read_text() == HAND_MADE and (systemd.unit_dir / "memsched-alpha.timer").exists()
    forced = systemd.memsched("uninstall-units", "--config", str(config), "--force")
    assert forced.returncode == 0, forced.stderr
    assert not beta.exists() and not list(systemd.unit_dir.glob("memsched-*"))


def test_a_foreign_file_sharing_the_prefix_is_left_alone(systemd: SystemdTestEnv) -> None:
    """Not recorded, not wanted, no header: somebody else's; neither a conflict nor deleted."""
    config = write_config(systemd.tmp, {"alpha": command_job(["/bin/true"], cron="0 * * * *")})
    foreign = systemd.write_unit("memsched-theirs.service", HAND_MADE)
    assert systemd.memsched("install-units", "--config", str(config)).returncode == 0
    assert systemd.memsched("uninstall-units", "--config", str(config)).returncode == 0
    assert foreign.read_text() == HAND_MADE


def test_install_units_force_deletes_a_hand_replaced_unit_of_a_removed_job(systemd: SystemdTestEnv) -> None:
    """The "delete" plan of install-units (not only uninstall-units) takes --force too, and only then deletes."""
    jobs = {"alpha": command_job(["/bin/true"], cron="0 * * * *"), "beta": command_job(["/bin/true"], cron="0 * * * *")}
    assert systemd.memsched("install-units", "--config", str(write_config(systemd.tmp, jobs))).returncode == 0
    beta = systemd.unit_dir / "memsched-beta.service"
    beta.write_text(HAND_MADE)
    del jobs["beta"]
    config = write_config(systemd.tmp, jobs)
    assert systemd.memsched("install-units", "--config", str(config)).returncode == 2 and beta.read_text() == HAND_MADE
    forced = systemd.memsched("install-units", "--config", str(config), "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    actions = {u["name"]: u["action"] for u in json.loads(forced.stdout)["units"]}
    assert actions.get("memsched-beta.service") == "delete", actions
    assert not beta.exists() and not (systemd.unit_dir / "memsched-beta.timer").exists()
    assert (systemd.unit_dir / "memsched-alpha.timer").exists()
