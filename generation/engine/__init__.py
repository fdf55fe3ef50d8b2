"""The generation engine: the only package that imports torch and diffusers.

Importing this package is cheap: ``registry`` and ``families`` are plain Python and are what web processes
use (model lists, validation). ``pipelines``, ``runner``, ``preview`` and ``demo`` import torch and are only
imported by workers and commands that generate.
"""
