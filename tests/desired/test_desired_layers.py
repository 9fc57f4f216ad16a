"""Layered desired state (shared.desired) and its schema check (edge_agent.control.desired_schema)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge_agent.control.desired_schema import DesiredStateError, validate_desired
from shared.desired import (
    DeviceRecord,
    apply_pinned,
    decode_record,
    diff,
    encode_record,
    layer_key,
    layers_for,
    merge,
    revision,
)
from shared.errors import ConfigError

FLEET = {
    "router": {
        "load_slo_s": 2.0,
        "rules": [{"name": "long", "min_prompt_tokens": 900, "tier": "cloud"}],
    },
    "telemetry": {"trace_ratio": 0.1},
}
SITE = {"router": {"load_slo_s": 5.0, "cascade": {"enabled": True}}}
DEVICE = {"router": {"rules": []}}


def test_later_layers_override_key_by_key_and_lists_are_replaced() -> None:
    merged = merge([FLEET, SITE, DEVICE])
    assert merged == {
        "router": {"load_slo_s": 5.0, "rules": [], "cascade": {"enabled": True}},
        "telemetry": {"trace_ratio": 0.1},
    }
    assert FLEET["router"]["load_slo_s"] == 2.0  # inputs are not changed


def test_pinned_local_settings_win_and_a_pinned_unset_path_falls_back_to_the_default() -> None:
    merged = merge([FLEET, SITE])
    local = {"router": {"load_slo_s": 0.5}}
    out = apply_pinned(merged, local, ["router.load_slo_s", "telemetry.trace_ratio"])
    assert out["router"]["load_slo_s"] == 0.5
    assert "trace_ratio" not in out["telemetry"]
    assert out["router"]["cascade"] == {"enabled": True}


def test_revision_depends_on_content_not_key_order() -> None:
    a = {"router": {"load_slo_s": 1.0, "rules": []}}
    b = {"router": {"rules": [], "load_slo_s": 1.0}}
    assert revision(a) == revision(b)
    assert revision(a) != revision({"router": {"load_slo_s": 1.5, "rules": []}})
    assert len(revision(a)) == 16


def test_layer_keys_cannot_collide_with_device_keys() -> None:
    assert layers_for("dev-1", "berlin") == [
        "layer.fleet",
        "layer.site.berlin",
        "layer.device.dev-1",
    ]
    assert layers_for("dev-1", None) == ["layer.fleet", "layer.device.dev-1"]
    with pytest.raises(ConfigError, match="letters, digits"):
        layer_key(site="ber lin")
    with pytest.raises(ConfigError, match="not both"):
        layer_key(site="a", device="b")


def test_diff_names_added_removed_and_changed_paths() -> None:
    assert diff(merge([FLEET]), merge([FLEET, SITE])) == [
        "+router.cascade",
        "~router.load_slo_s",
    ]
    assert diff({"models": {"m": 1}}, {}) == ["-models"]


def test_record_round_trip_and_a_broken_record_says_where() -> None:
    rec = DeviceRecord(revision="abc", state={"router": {}}, layers=["layer.fleet"])
    assert decode_record(encode_record(rec)) == rec
    with pytest.raises(ConfigError, match="revision"):
        decode_record(b'{"state": {}}')


def test_a_bad_field_gets_the_same_field_level_error_as_config_show() -> None:
    with pytest.raises(DesiredStateError) as err:
        validate_desired({"router": {"cascade": {"min_mean_logprob": 0.5}}})
    text = str(err.value)
    assert text.startswith("invalid desired state:")
    assert (
        "router.cascade.min_mean_logprob: Input should be less than or equal to 0 (got 0.5)" in text
    )
    assert (
        "[env AGL_ROUTER__CASCADE__MIN_MEAN_LOGPROB, or `min_mean_logprob` in the [router.cascade] table"
        in text
    )


def test_an_unknown_key_suggests_the_close_one() -> None:
    with pytest.raises(DesiredStateError, match="did you mean `load_slo_s`"):
        validate_desired({"router": {"load_slo": 2}})
    with pytest.raises(
        DesiredStateError, match=r"plugins\.pii\.sha256: Value error, must be 64 hex"
    ):
        validate_desired({"plugins": {"pii": {"sha256": "abc"}}})


def test_a_good_layer_validates() -> None:
    state = validate_desired(
        {
            "router": {"cascade": {"enabled": True, "target_escalation_share": 0.2}},
            "plugins": {"pii_redact": {"sha256": "A" * 64, "config": {"mode": "mask"}}},
            "models": {"small": {"sha256": "b" * 64, "main": True}},
        }
    )
    assert state.plugins is not None and state.plugins["pii_redact"].sha256 == "a" * 64


def test_the_child_process_check_prints_the_same_lines() -> None:
    bad = json.dumps(
        {"router": {"cascade": {"tuning_min_logprob": -0.01, "tuning_max_logprob": -1}}}
    )
    out = subprocess.run(
        [sys.executable, "-m", "edge_agent.control.desired_schema"],
        input=bad, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    assert "tuning_min_logprob (-0.01) is above tuning_max_logprob (-1.0)" in out.stdout
