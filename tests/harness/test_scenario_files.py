"""Scenario files: every shipped one loads, and bad files say which field to fix."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from openautoglm.cli import main
from openautoglm.sim.errors import ScenarioError
from openautoglm.sim.scenario import load_scenario, scenario_names

MINIMAL = """
name = "t"
duration_s = 5
[[sites]]
name = "a"
devices = 2
[arrivals]
rate_per_device = 1
[[prompts]]
name = "short"
words = 5
weight = 1
[edge.hub]
request_timeout_s = 2
first_chunk_timeout_s = 2
chunk_timeout_s = 2
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_every_shipped_scenario_loads_and_each_fault_kind_has_one() -> None:
    names = scenario_names()
    assert "smoke" in names
    kinds = {f.kind for name in names for f in load_scenario(name).faults}
    assert kinds == {
        "kill_worker",
        "add_worker",
        "restart_nats",
        "partition_site",
        "slow_hub",
        "collector_down",
        "clock_jump",
        "plugin_rollout",
    }
    assert load_scenario("site_partition").batches.device_share > 0


def test_smoke_is_small_enough_for_a_minute() -> None:
    smoke = load_scenario("smoke")
    assert smoke.faults == []
    assert smoke.duration_s <= 15
    assert smoke.device_count <= 20


def test_a_minimal_file_loads_with_defaults(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, MINIMAL))
    assert scenario.device_count == 2
    assert scenario.hub.workers == 2
    assert scenario.traffic.streaming_share == 0.3


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("colour = 'red'\n", "colour: Extra inputs are not permitted"),
        (
            "[[faults]]\nat_s = 1\nkind = 'partition_site'\nsite = 'nowhere'\nduration_s = 1\n",
            "names site 'nowhere', which is not one of the [[sites]]: a",
        ),
        (
            "[[faults]]\nat_s = 1\nkind = 'slow_hub'\n",
            "a slow_hub fault needs duration_s",
        ),
        ("[[faults]]\nat_s = 9\nkind = 'add_worker'\n", "is after the run ends (duration_s = 5)"),
        ("[[faults]]\nat_s = 1\nkind = 'meteor'\n", "faults.0.kind: Input should be"),
        (
            "[[faults]]\nat_s = 1\nkind = 'collector_down'\nduration_s = 1\n",
            "collector_down needs telemetry = true",
        ),
    ],
)
def test_bad_scenarios_name_the_field(tmp_path: Path, extra: str, expected: str) -> None:
    # Top-level keys must come before the first table: put them first.
    text = extra + MINIMAL if not extra.startswith("[") else MINIMAL + extra
    with pytest.raises(ScenarioError) as caught:
        load_scenario(_write(tmp_path, text))
    assert expected in str(caught.value)
    assert "s.toml is not a valid scenario" in str(caught.value)


def test_a_deadline_the_hub_timeouts_cannot_keep_is_refused(tmp_path: Path) -> None:
    text = MINIMAL + "[traffic]\ndeadline_s = 2\n"
    with pytest.raises(ScenarioError, match=r"traffic.deadline_s = 2 cannot be kept: .* = 2 s"):
        load_scenario(_write(tmp_path, text))


def test_invalid_toml_and_unknown_names_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="is not valid TOML"):
        load_scenario(_write(tmp_path, "name = "))
    with pytest.raises(ScenarioError, match=r"no shipped scenario of that name; shipped: .*smoke"):
        load_scenario("no-such-scenario")
    with pytest.raises(ScenarioError, match="cannot read the scenario file"):
        load_scenario(tmp_path / "missing.toml")


def test_plugin_rollout_needs_a_hub_worker_and_takes_its_waves(tmp_path: Path) -> None:
    fault = "[[faults]]\nat_s = 1\nkind = 'plugin_rollout'\nwaves = '10%,100%'\nwindow_s = 2\n"
    scenario = load_scenario(_write(tmp_path, MINIMAL + fault))
    assert (scenario.faults[0].waves, scenario.faults[0].window_s) == ("10%,100%", 2.0)
    with pytest.raises(ScenarioError, match="plugin_rollout needs hub workers"):
        load_scenario(_write(tmp_path, MINIMAL + "[hub]\nworkers = 0\n" + fault))


def test_the_cli_refuses_a_bad_scenario_or_baseline_before_starting_anything(
    tmp_path: Path,
) -> None:
    script = Path(sys.executable).parent / "open-autoglm"
    unknown = subprocess.run(
        [str(script), "sim", "no-such-scenario"], capture_output=True, text=True, check=False
    )
    assert unknown.returncode == 1
    assert "no shipped scenario of that name; shipped: " in unknown.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    no_figures = subprocess.run(
        [str(script), "sim", "smoke", "--baseline", str(empty)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert no_figures.returncode == 1
    assert f"no baseline figures at {empty / 'figures.json'}" in no_figures.stderr
    assert "devices at" not in no_figures.stderr  # refused before the fleet started


def test_duration_s_overrides_the_scenario_and_is_checked_against_its_faults() -> None:
    late = CliRunner().invoke(main, ["sim", "hub_outage", "--duration-s", "2"])
    assert late.exit_code == 1
    assert "fault kill_worker at 3 s is after the run ends (duration_s = 2)" in late.output
    zero = CliRunner().invoke(main, ["sim", "smoke", "--duration-s", "0"])
    assert zero.exit_code == 2 and "--duration-s" in zero.output
    assert load_scenario("smoke", duration_s=4).duration_s == 4
    # A refused run leaves logging alone (quieting edge_agent would hide later tests' lines).
    assert logging.getLogger("edge_agent").level == logging.NOTSET
