"""The pipeline engine both the SDK (``openautoglm``) and the agent use (pure but for the run loop).

    graph = build_graph("flow", [Task(name="clean", func=str.strip, input_key="raw", output_key="text"),
                                 Task(name="sum", model="glm-4-plus", prompt_template="Sum up: {text}",
                                      output_key="summary")])
    result = await run_graph(graph, {"raw": " … "}, model_call=call)

Model calls are injected, so this package does no network I/O of its own; declared pipelines
(TOML) load through :mod:`shared.pipelines.declared`.
"""

from shared.pipelines.errors import (
    AgentUnreachableError,
    MissingInputError,
    ModelCallError,
    PipelineBuildError,
    PipelineError,
    PipelineLoadError,
    TaskFailedError,
)
from shared.pipelines.graph import PipelineGraph, build_graph
from shared.pipelines.runner import (
    ModelCall,
    ModelReply,
    ModelRequest,
    PipelineResult,
    TaskTrace,
    run_graph,
    run_graph_many,
)
from shared.pipelines.tasks import Task

__all__ = [
    "AgentUnreachableError",
    "MissingInputError",
    "ModelCall",
    "ModelCallError",
    "ModelReply",
    "ModelRequest",
    "PipelineBuildError",
    "PipelineError",
    "PipelineGraph",
    "PipelineLoadError",
    "PipelineResult",
    "Task",
    "TaskFailedError",
    "TaskTrace",
    "build_graph",
    "run_graph",
    "run_graph_many",
]
