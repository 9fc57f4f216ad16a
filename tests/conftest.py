"""The suite's fixtures live in ``tests/fixtures`` (one place); this registers them.

``make test`` runs the suite on three pytest-xdist workers. Every llama.cpp context the tests
start, in-process or in a child agent, gets one thread (``AGL_N_THREADS=1``, inherited by the
children): two contexts of two spinning threads each on a 2-core box stall one another for
seconds. Speed is measured in ``bench/``, never here.

Hypothesis's ``too_slow`` health check times input generation by the wall clock, so a loaded
machine failed it: the suite's profile leaves it out (and so do the tests with their own list).
"""

import os

from hypothesis import HealthCheck, settings

os.environ.setdefault("AGL_N_THREADS", "1")
settings.register_profile("suite", suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")

pytest_plugins = ["tests.fixtures.plugin"]
