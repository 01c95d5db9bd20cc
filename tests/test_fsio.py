"""fsio.atomic: the one way ctrltower replaces a file (agent state, tokens, server.ready, rendered
configs). Real files in a temp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fsio.atomic import atomic_write, create_private, staging_path


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_replaces_the_file_owner_only_and_leaves_no_staging_file(tmp_path: Path) -> None:
    target = tmp_path / "token"
    target.write_text("old\n")
    target.chmod(0o644)
    atomic_write(target, b"new\n")
    assert target.read_bytes() == b"new\n"
    assert mode(target) == 0o600  # the new file's mode, not the old one's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token"]


def test_the_given_mode_is_kept(tmp_path: Path) -> None:
    atomic_write(tmp_path / "server.ready", b"{}\n", 0o644)
    atomic_write(tmp_path / "otelcol", b"\x7fELF", 0o700)
    assert mode(tmp_path / "server.ready") == 0o644 and mode(tmp_path / "otelcol") == 0o700


def test_a_symlink_at_the_staging_path_is_refused_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    target = tmp_path / "config.yaml"
    staging_path(target).symlink_to(victim)
    with pytest.raises(OSError, match="symlink"):
        atomic_write(target, b"evil\n")
    assert victim.read_text() == "precious\n" and not target.exists()


def test_a_staging_file_left_by_a_crash_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    staging_path(target).write_text("half a fi")
    atomic_write(target, b"{}")
    assert target.read_bytes() == b"{}" and not staging_path(target).exists()


def test_a_failed_write_keeps_the_old_file_and_removes_the_staging_file(tmp_path: Path) -> None:
    target = tmp_path / "last_good.yaml"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert not staging_path(target).exists()


def test_create_private_refuses_a_symlink_and_is_owner_only(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError, match="symlink"):
        create_private(tmp_path / "link")
    fd = create_private(tmp_path / "log.1")
    os.close(fd)
    assert mode(tmp_path / "log.1") == 0o600
