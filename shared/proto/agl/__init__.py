"""Protos of the ``agl`` proto package."""
