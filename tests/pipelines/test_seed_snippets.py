"""The seed article's two snippets, word for word, against a real `open-autoglm up`.

The article prints them on one line each (its HTML lost the line breaks); here they are laid
out as code, every word kept. They run with ``exec`` so the test can read the ``result``
they leave behind and check how it was served.
"""

from __future__ import annotations

from typing import Any

import pytest

# Chapter 1: the summarization flow.
SUMMARIZATION_FLOW = """\
# 定义自动化流水线任务
from openautoglm import Pipeline, Task

# 创建管道实例
pipeline = Pipeline(name="summarization_flow")

# 添加预处理任务
preprocess_task = Task(
    name="clean_input",
    func=lambda text: text.strip().lower(),
    input_key="raw_text",
    output_key="cleaned_text"
)

# 添加大模型推理任务
llm_task = Task(
    name="generate_summary",
    model="glm-4-plus",
    prompt_template="请为以下内容生成摘要:{cleaned_text}",
    input_key="cleaned_text",
    output_key="summary"
)

# 编排任务并执行
pipeline.add_tasks([preprocess_task, llm_task])
result = pipeline.run(raw_text="人工智能正在快速发展……")
print(result["summary"])  # 输出生成的摘要
"""

# Chapter 3.3: AutoTask.
AUTOTASK = """\
from autoglm.task import AutoTask

task = AutoTask(
    task_type="text-generation",
    model="glm-small",
    prompt="请描述量子计算的基本原理"
)
result = task.run()
print(result.output)
"""


def _run(snippet: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__seed__"}
    exec(compile(snippet, "<seed>", "exec"), namespace)
    return namespace


@pytest.mark.timeout(450)
def test_the_summarization_flow_runs_word_for_word_and_the_cloud_tier_writes_the_summary(
    agent_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _run(SUMMARIZATION_FLOW)["result"]
    assert isinstance(result["summary"], str) and result["summary"].strip()
    assert result["cleaned_text"] == "人工智能正在快速发展……"
    summary = result.task("generate_summary")
    assert (summary.tier, summary.reason) == ("cloud", "policy")
    assert summary.model == "glm-4-plus" and summary.completion_tokens
    assert [t.status for t in result.trace] == ["ok", "ok"]
    assert result["summary"] in capsys.readouterr().out


@pytest.mark.timeout(450)
def test_the_autotask_snippet_runs_word_for_word_on_the_local_alias(
    agent_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _run(AUTOTASK)["result"]
    assert result.output.strip()
    assert result.output in capsys.readouterr().out
    assert [t.task for t in result.trace] == ["preprocess", "inference", "postprocess"]
    # glm-small is the local model: answered at the edge, or escalated by the demo's cascade.
    assert (result.tier, result.reason) in {("edge", "default"), ("cloud", "confidence")}
