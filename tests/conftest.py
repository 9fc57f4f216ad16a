"""The suite's fixtures live in ``tests/fixtures`` (one place); this registers them."""

pytest_plugins = ["tests.fixtures.plugin"]
