"""Settings for the test suite: the studio's own settings in test mode, data in a fresh temporary dir."""

import os
import tempfile

os.environ.setdefault("STUDIO_ENV", "test")
os.environ.setdefault("STUDIO_DATA_DIR", tempfile.mkdtemp(prefix="studio-test-"))
os.environ.setdefault("STUDIO_PREVIEW_MIN_INTERVAL", "0")

from studio.settings import *  # noqa: E402,F403
