"""Open-AutoGLM's SDK and all-in-one launcher.

    from openautoglm import Pipeline, Task
    pipeline = Pipeline(name="summarization_flow")
    pipeline.add_tasks([Task(name="clean", func=str.strip, input_key="raw", output_key="text"),
                        Task(name="sum", model="glm-4-plus", prompt_template="Summarise: {text}",
                             output_key="summary")])
    print(pipeline.run(raw=" … ")["summary"])

Model calls go to an agent (``OPENAUTOGLM_BASE_URL``, default ``http://127.0.0.1:8080/v1``:
start one with ``open-autoglm up``). This is the only product package that imports both
``edge_agent`` and ``cloud_hub`` (the launcher); the SDK classes load neither until asked.
"""

from openautoglm.autotask import AutoTask, AutoTaskResult
from openautoglm.pipeline import Pipeline, PipelineStream
from shared.pipelines import (
    AgentUnreachableError,
    MissingInputError,
    ModelCallError,
    PipelineBuildError,
    PipelineError,
    PipelineLoadError,
    PipelineResult,
    Task,
    TaskFailedError,
    TaskTrace,
)

__version__ = "0.1.0"

__all__ = [
    "AgentUnreachableError",
    "AutoTask",
    "AutoTaskResult",
    "MissingInputError",
    "ModelCallError",
    "Pipeline",
    "PipelineBuildError",
    "PipelineError",
    "PipelineLoadError",
    "PipelineResult",
    "PipelineStream",
    "Task",
    "TaskFailedError",
    "TaskTrace",
    "__version__",
]
