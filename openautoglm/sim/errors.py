"""The simulator's errors: one base, :class:`SimError` (an ``AglError``).

AglError
└── SimError                  anything the simulator refuses or cannot do
    ├── ScenarioError         the scenario file is unreadable or invalid (names the field)
    └── TopologyError         nats-server, a hub worker or a hubctl command failed
"""

from __future__ import annotations

from shared.errors import AglError

__all__ = ["ScenarioError", "SimError", "TopologyError"]


class SimError(AglError):
    """Base of the simulator's errors."""


class ScenarioError(SimError):
    """The scenario file cannot be used; the message names the field and what to fix."""


class TopologyError(SimError):
    """A nats-server, a hub worker or a ``hubctl`` command of the simulated fleet failed."""
