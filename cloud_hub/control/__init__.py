"""The hub's control plane: NATS auth (``auth``, ``keystore``, ``push``), the device registry
(``registry``) and the heartbeat intake that feeds it (``intake``)."""
