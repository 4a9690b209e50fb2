"""The errors pure DSP raises. They say what is wrong with the input in a
sentence a person can act on; they know nothing of HTTP. The job runtime
(``workers/runtime.py``) maps them, once, to a status and a refund rule: both
are the caller's side (the audio or the options they sent), so 422 and not
refunded.

Both subclass ``ValueError``: to a plain Python caller they are bad values.
"""

from __future__ import annotations


class DspError(ValueError):
    """Base of the DSP errors; ``message`` is the sentence to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnprocessableAudio(DspError):
    """The audio cannot be processed by this operation: empty, silent,
    non-finite, too short, an unsupported channel layout, a target it cannot
    reach..."""


class OptionOutOfRange(DspError):
    """An option is outside the range this algorithm accepts.

    The API validates options against the registry before a job exists, so
    this reaches a job only when the two disagree; it still names the option."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option
