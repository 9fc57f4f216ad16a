"""The suite's fixtures live in ``tests/fixtures`` (one place); this registers them.

``make test`` runs the suite on three pytest-xdist workers. Every llama.cpp context the tests
start, in-process or in a child agent, gets one thread (``AGL_N_THREADS=1``, inherited by the
children): two contexts of two spinning threads each on a 2-core box stall one another for
seconds. Speed is measured in ``bench/``, never here.
"""

import os

os.environ.setdefault("AGL_N_THREADS", "1")

pytest_plugins = ["tests.fixtures.plugin"]
