"""Settings for the test suite: the studio's own settings in test mode, data in a fresh temporary dir."""

import os
import tempfile

os.environ.setdefault("STUDIO_ENV", "test")
os.environ.setdefault("STUDIO_DATA_DIR", tempfile.mkdtemp(prefix="studio-test-"))
os.environ.setdefault("STUDIO_PREVIEW_MIN_INTERVAL", "0")
# Tests run two at a time (pytest -n 2) on small machines: one torch thread each, so OpenMP threads never
# outnumber the cores and spin-wait for each other (that made a 13 s test take minutes).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("STUDIO_TORCH_THREADS", "1")

from studio.settings import *  # noqa: E402,F403

# Tests see only the models they build (the tiny random `demo` of tests/conftest.py, the families' fixtures);
# the trained model shipped in generation/demo_model/ has tests of its own that load it by path.
STUDIO_BUNDLED_MODELS = {}
# Jobs in tests are queued before a worker runs them: a call never waits for more (tests/unit/test_batching.py
# sets it where the wait is what it tests).
STUDIO_BATCH_WAIT_MS = 0.0
