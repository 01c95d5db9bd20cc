"""The server's metrics options reach the metrics process's settings (webui.metrics.process)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from ctrltower.cli import cli
from webui.metrics.process import metrics_settings
from webui.settings import ServerSettings


def test_max_gap_follows_the_server_option(tmp_path: Path) -> None:
    default = metrics_settings(ServerSettings(data_dir=tmp_path, metrics_interval_s=2.0))
    assert default.max_gap_s == 2.0 * 3.5
    wide = metrics_settings(
        ServerSettings(data_dir=tmp_path, metrics_interval_s=2.0, metrics_max_gap_intervals=30)
    )
    assert wide.max_gap_s == 60.0 and wide.interval_s == 2.0


def test_a_max_gap_of_one_interval_or_less_is_refused(tmp_path: Path) -> None:
    # a gap limit at or below one interval would make every on-time scrape a gap
    result = CliRunner().invoke(
        cli, ["server", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:1", "--metrics-max-gap", "1"]
    )
    assert result.exit_code == 2 and "--metrics-max-gap" in result.output
    assert not (tmp_path / "state.db").exists()
