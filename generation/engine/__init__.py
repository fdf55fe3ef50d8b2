"""The generation engine: the only package that imports torch and diffusers.

Importing this package is cheap: ``registry`` and ``families`` are plain Python and are what web processes
use (model lists, validation). ``pipelines``, ``runner``, ``preview`` and ``demo`` import torch and are only
imported by workers and commands that generate.
"""

import os

# Set before torch loads (the engine is the only importer). On a CPU shared with the web server, Redis and a
# browser, OpenMP threads that spin while waiting for a descheduled sibling slow a job several-fold; passive
# waiting costs little when the cores are free and saves that when they are not. Offline, always.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
