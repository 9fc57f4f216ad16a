"""Every example in the README runs (or parses) as written, and the README stays self-contained.

* each ```toml block loads with the schema it belongs to (the hub's when it has ``[[models]]``);
* each ```python block compiles, and runs when it needs no agent or network;
* each command line in a ```bash or ```console block that calls ``edge-agent``, ``hubctl`` or
  ``open-autoglm`` parses (unknown commands and options fail; ``--help`` stops before any I/O);
  scripts it runs (``bench/…``, ``deploy/…``) exist;
* links point inside the repository; the files in ``examples/`` load.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cloud_hub.checks import check_hub
from cloud_hub.cli import main as hubctl
from cloud_hub.settings import load_hub_settings
from edge_agent.api.jobs import completion_job
from edge_agent.api.schemas import CompletionRequest
from edge_agent.cli import main as edge_agent
from edge_agent.router.calibrate import read_prompts_jsonl
from edge_agent.settings import load_settings
from openautoglm.cli import main as open_autoglm

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CLIS: dict[str, click.Command] = {
    "edge-agent": edge_agent,
    "hubctl": hubctl,
    "open-autoglm": open_autoglm,
}
#: Commands the README names as future work, with the issue that will add them.
NOT_YET: dict[tuple[str, str], str] = {}
_SHELL_ENDS = {"|", ">", ">>", "&&", "||", ";", "&"}


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    line: int

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.lang})"


def _blocks() -> list[Block]:
    blocks: list[Block] = []
    lines = README.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if not opening:
            i += 1
            continue
        indent, lang, start = opening.group(1), opening.group(2), i + 1
        body: list[str] = []
        i += 1
        while not lines[i].strip().startswith("```"):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        blocks.append(Block(lang, "\n".join(body) + "\n", start))
        i += 1
    return blocks


def _of(*langs: str) -> list[Block]:
    return [b for b in _blocks() if b.lang in langs]


@pytest.fixture(autouse=True)
def _no_agl_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AGL_"):
            monkeypatch.delenv(name)


def test_the_readme_has_examples_of_every_kind() -> None:
    langs = {b.lang for b in _blocks()}
    assert {"toml", "python", "bash", "console"} <= langs


@pytest.mark.parametrize("block", _of("toml"), ids=str)
def test_toml_blocks_load_with_their_settings_schema(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "example.toml"
    path.write_text(block.text)
    if "[[models]]" in block.text:
        load_hub_settings(path)
    else:
        load_settings(path)


@pytest.mark.parametrize("block", _of("python"), ids=str)
def test_python_blocks_compile_and_run_when_they_can(block: Block) -> None:
    code = compile(block.text, str(block), "exec")
    if "http://" not in block.text and "OpenAI(" not in block.text:
        exec(code, {})


def _commands(block: Block) -> list[str]:
    """Command lines of a block: continuations joined; console output and prompts dropped."""
    joined = block.text.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        if block.lang == "console":
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if line.strip():
            out.append(line.strip())
    return out


def _argv(line: str) -> list[str]:
    """The words of the first command on ``line`` (``eval "$(…)"`` unwrapped, VAR=x dropped)."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # a quoted JSON body spread over lines (curl -d '{ …'): not ours
        return []
    if words[:1] == ["eval"] and len(words) == 2:
        return _argv(words[1].removeprefix("$(").removesuffix(")"))
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words.pop(0)
    for i, word in enumerate(words):
        if word in _SHELL_ENDS:
            return words[:i]
    return words


def _cli_lines() -> list[tuple[Block, list[str]]]:
    found = []
    for block in _of("bash", "console"):
        for line in _commands(block):
            argv = _argv(line)
            if argv and argv[0].removeprefix(".venv/bin/") in CLIS:
                found.append((block, [argv[0].removeprefix(".venv/bin/"), *argv[1:]]))
    return found


def test_the_readme_calls_every_cli() -> None:
    assert {argv[0] for _, argv in _cli_lines()} == set(CLIS)


@pytest.mark.parametrize(("block", "argv"), _cli_lines(), ids=lambda x: str(x))
def test_cli_lines_parse(block: Block, argv: list[str]) -> None:
    if tuple(argv[:2]) in NOT_YET:
        pytest.skip(f"{' '.join(argv[:2])} is future work ({NOT_YET[(argv[0], argv[1])]})")
    result = CliRunner().invoke(CLIS[argv[0]], [*argv[1:], "--help"], prog_name=argv[0])
    assert result.exit_code == 0, f"{block}: `{' '.join(argv)}` does not parse:\n{result.output}"


def test_scripts_the_readme_runs_exist() -> None:
    missing = []
    for block in _of("bash", "console"):
        for line in _commands(block):
            argv = _argv(line)
            if not argv:
                continue
            script = (
                argv[1] if Path(argv[0]).name.startswith("python") and len(argv) > 1 else argv[0]
            )
            local = "/" in script and not script.startswith((".venv/", "~", "/"))
            if local and not (ROOT / script).exists():
                missing.append(f"{block}: {script}")
    assert missing == []


def test_links_stay_inside_the_repository() -> None:
    text = README.read_text(encoding="utf-8")
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    targets = re.findall(r"\]\(([^)\s]+)\)", prose) + re.findall(r"<(https?://[^>]+)>", prose)
    assert targets, "expected some links"
    outside = [t for t in targets if re.match(r"^[a-z]+:", t) or t.startswith("//")]
    assert outside == [], "the README must not link outside the repository"
    broken = [t for t in targets if not (ROOT / t.split("#")[0]).exists()]
    assert broken == []


def test_every_example_file_named_in_the_readme_exists_and_loads() -> None:
    named = {
        n.rstrip(".") for n in re.findall(r"examples/[\w./-]+", README.read_text(encoding="utf-8"))
    }
    assert {
        "examples/prompts.jsonl",
        "examples/request.json",
        "examples/hub.toml",
        "examples/edge.toml",
    } <= named
    assert [n for n in named if not (ROOT / n).exists()] == []
    load_settings(ROOT / "examples/edge.toml")
    problems, _ = check_hub(load_hub_settings(ROOT / "examples/hub.toml"))
    assert problems == []
    request = json.loads((ROOT / "examples/request.json").read_text())
    assert isinstance(request["messages"], list)
    prompts = read_prompts_jsonl((ROOT / "examples/prompts.jsonl").read_text(encoding="utf-8"))
    assert len(prompts) >= 10


def test_the_stated_default_max_tokens_is_the_real_one() -> None:
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert "`/v1/completions` stops after 16 tokens" in text
    job = completion_job(CompletionRequest.model_validate({"model": "m", "prompt": "x"}))
    assert job.max_tokens == 16


@pytest.mark.parametrize("prog", sorted(CLIS))
def test_shell_completion_as_the_readme_shows_it(prog: str) -> None:
    var = "_" + prog.upper().replace("-", "_") + "_COMPLETE"
    assert f'eval "$({var}=bash_source {prog})"' in README.read_text(encoding="utf-8")
    result = CliRunner().invoke(CLIS[prog], [], prog_name=prog, env={var: "bash_source"})
    assert result.exit_code == 0
    assert f"_{prog.replace('-', '_')}_completion()" in result.output
