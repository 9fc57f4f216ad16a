"""``from autoglm.task import AutoTask``, as the seed article writes it (chapter 3.3)."""

from openautoglm.autotask import AutoTask, AutoTaskResult

__all__ = ["AutoTask", "AutoTaskResult"]
