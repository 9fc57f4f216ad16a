"""Version 1 of the ``agl`` protos (``agl.v1``)."""
