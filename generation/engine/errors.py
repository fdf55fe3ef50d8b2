"""Failures the engine explains itself (plain Python, so workers can catch them without loading torch)."""


class GenerationError(RuntimeError):
    """A failure whose message is written for the job's members: it says what went wrong in their terms and
    names nothing on the server (no paths, no library internals). Any other exception a job raises is
    shown to members as a generic sentence, its text going to the worker's log."""
