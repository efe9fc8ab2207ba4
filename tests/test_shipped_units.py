"""shipped_elsewhere: which of memsched's units a package ships in a directory the manager reads after the
install directory (the PID-1 suite proves the whole path with the Debian package: tests/pid1)."""

from __future__ import annotations

from pathlib import Path

from memsched.systemd.install import plan_install, shipped_elsewhere
from memsched.systemd.render import HEADER_MARK, RenderedUnit

OURS = f"{HEADER_MARK} 0.1.0: do not edit\n[Timer]\nOnCalendar=daily\n"


def _dirs(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    run, etc, usr, lib = (tmp_path / d for d in ("run", "etc", "usr", "lib"))
    for d in (run, etc, usr, lib):
        d.mkdir()
    return run, etc, usr, lib


def test_only_directories_after_the_install_directory_count_and_the_first_wins(tmp_path: Path) -> None:
    run, etc, usr, lib = _dirs(tmp_path)
    (run / "memsched-a.timer").write_text(OURS)  # before /etc: not something /etc overrides
    (usr / "memsched-b.timer").write_text(OURS)
    (lib / "memsched-b.timer").write_text(OURS)
    (usr / "memsched-c.timer").write_text("[Timer]\n")  # not memsched's: hides lib's, as for the manager
    (lib / "memsched-c.timer").write_text(OURS)
    search = [str(run), str(etc), str(usr), str(lib)]
    names = ["memsched-a.timer", "memsched-b.timer", "memsched-c.timer", "memsched-d.timer"]
    assert shipped_elsewhere(names, etc, search) == {"memsched-b.timer": usr / "memsched-b.timer"}
    assert shipped_elsewhere(names, tmp_path / "elsewhere", search) == {}, "a directory the manager does not read"


def test_a_shipped_unit_that_matches_is_unchanged_one_that_differs_is_overridden(tmp_path: Path) -> None:
    _, etc, usr, _ = _dirs(tmp_path)
    (usr / "memsched-b.timer").write_text(OURS)
    unit = RenderedUnit("memsched-b.timer", OURS, "b")
    plan = plan_install([unit], etc, "system", [], shipped={"memsched-b.timer": usr / "memsched-b.timer"})
    assert [(c.action, c.path) for c in plan.changes] == [("unchanged", usr / "memsched-b.timer")]
    other = RenderedUnit("memsched-b.timer", OURS + "Persistent=yes\n", "b")
    plan = plan_install([other], etc, "system", [], shipped={"memsched-b.timer": usr / "memsched-b.timer"})
    assert [(c.action, c.path) for c in plan.changes] == [("add", etc / "memsched-b.timer")]
    assert "overrides" in plan.changes[0].note
