"""The simulator's errors: one base, :class:`SimError` (an ``AglError``).

AglError
└── SimError                  anything the simulator refuses or cannot do
    ├── ScenarioError         the scenario file is unreadable or invalid (names the field)
    ├── TopologyError         nats-server or a hub worker did not start
    └── NotYetAvailable       a fault or check needs a feature that is not built yet
"""

from __future__ import annotations

from shared.errors import AglError

__all__ = ["NotYetAvailable", "ScenarioError", "SimError", "TopologyError"]


class SimError(AglError):
    """Base of the simulator's errors."""


class ScenarioError(SimError):
    """The scenario file cannot be used; the message names the field and what to fix."""


class TopologyError(SimError):
    """A nats-server or a hub worker of the simulated fleet did not start."""


class NotYetAvailable(SimError):
    """A fault or check needs a feature that is not built yet (the message says which issue)."""
