"""Declared pipelines served by the agent, called with httpx as the README does with curl."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from openautoglm import Pipeline, PipelineLoadError

ROOT = Path(__file__).resolve().parents[2]
RAW = "  Open-AutoGLM runs small models on edge devices and sends hard requests to a cloud hub.  "


def _root(base_url: str) -> str:
    return base_url.removesuffix("/v1")


def test_the_agent_lists_good_pipelines_and_names_the_broken_file(agent_env: str) -> None:
    body = httpx.get(f"{agent_env}/pipelines", timeout=30).json()
    assert [p["id"] for p in body["data"]] == ["summarize"]
    assert body["data"][0]["inputs"] == ["raw_text"] and body["data"][0]["streams"] is True
    error = body["errors"]["broken.toml"]
    assert "task 'clean'" in error and "no_such_module_here" in error and "PYTHONPATH" in error


@pytest.mark.timeout(240)
def test_a_run_answers_json_with_every_key_and_the_trace(agent_env: str) -> None:
    resp = httpx.post(
        f"{agent_env}/pipelines/summarize/runs",
        json={"inputs": {"raw_text": RAW}, "stream": False},
        timeout=120,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["outputs"]["cleaned_text"] == RAW.strip().lower()
    assert body["outputs"]["words"] == len(RAW.split())
    assert body["outputs"]["summary"].strip()
    summary = next(t for t in body["trace"] if t["task"] == "generate_summary")
    assert (summary["tier"], summary["reason"], summary["status"]) == ("cloud", "policy", "ok")


@pytest.mark.timeout(240)
def test_a_streaming_last_task_answers_sse_pieces_then_the_result(agent_env: str) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    with httpx.stream(
        "POST",
        f"{agent_env}/pipelines/summarize/runs",
        json={"inputs": {"raw_text": RAW}},
        timeout=120,
    ) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    kinds = [k for k, _ in events]
    assert kinds[-1] == "result" and set(kinds[:-1]) == {"piece"}
    result = events[-1][1]["outputs"]
    assert "".join(str(d["text"]) for _, d in events[:-1]) == result["summary"]  # type: ignore[index]


def test_unknown_pipelines_and_missing_inputs_are_clear_errors(agent_env: str) -> None:
    missing = httpx.post(f"{agent_env}/pipelines/nope/runs", json={}, timeout=30)
    assert missing.status_code == 404 and "summarize" in missing.json()["error"]["message"]
    bad = httpx.post(f"{agent_env}/pipelines/summarize/runs", json={"inputs": {}}, timeout=30)
    assert bad.status_code == 400 and "'raw_text'" in bad.json()["error"]["message"]


def test_a_bad_import_path_fails_when_the_file_loads(pipelines_dir: Path) -> None:
    with pytest.raises(PipelineLoadError, match=r"broken\.toml: task 'clean': func = "):
        Pipeline.from_toml(pipelines_dir / "broken.toml")


@pytest.mark.timeout(240)
def test_the_sdk_runs_the_same_declared_file(agent_env: str) -> None:
    pipeline = Pipeline.from_toml(ROOT / "examples" / "pipelines" / "summarize.toml")
    result = pipeline.run(raw_text=RAW)
    assert result["summary"] and result.task("generate_summary").tier == "cloud"


@pytest.mark.timeout(240)
def test_the_cli_runs_a_declared_file_with_inputs(agent_env: str) -> None:
    from click.testing import CliRunner

    from openautoglm.cli import main

    file = ROOT / "examples" / "pipelines" / "summarize.toml"
    out = CliRunner().invoke(
        main, ["pipeline", "run", str(file), "--input", f"raw_text={RAW}", "--trace"]
    )
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)
    assert body["cleaned_text"] == RAW.strip().lower() and body["summary"]
