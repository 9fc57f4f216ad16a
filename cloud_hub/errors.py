"""Errors raised by the hub.

    HubError
    ├── BackendError       a model back-end failed to load or to generate
    └── UnknownBackend     the config names a back-end the hub does not have

``shared.errors.AglError`` (config, model files) and ``shared.protocol.ProtocolError``
(bad messages) come from ``shared``; the service turns all of them into ``ErrorMessage`` replies.
"""

from __future__ import annotations


class HubError(Exception):
    """Base class for the hub's own errors."""


class BackendError(HubError):
    """A back-end could not load its model or serve a request."""


class UnknownBackend(HubError):
    """The config names a back-end that does not exist."""
