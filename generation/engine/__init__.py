"""The generation engine: the only package that imports torch and diffusers.

Importing this package is cheap: ``registry`` and ``families`` are plain Python and are what web processes
use (model lists, validation). ``pipelines``, ``runner``, ``preview`` and ``demo`` import torch and are only
imported by workers and commands that generate.
"""

import os

# Set before torch loads (the engine is the only importer): never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
