"""One rule for waiting between attempts: ``first``, doubling up to ``limit``.

Used by the modem's reopen, the FXO line's sound-card reopen, the mailer and the
transcription queue; each keeps its own numbers."""


class Backoff:
    """Delays between attempts: ``first``, doubling up to ``limit``.

    Stateful (``next()``/``reset()``) for a driver that retries in a loop, or stateless
    (``after(tries)``) for a queue that keeps each job's count of tries on disk."""

    def __init__(self, first: float = 1.0, limit: float = 60.0) -> None:
        self.first, self.limit = first, limit
        self.reset()

    def reset(self) -> None:
        self._tries = 0

    def next(self) -> float:
        """The delay before the next attempt, and one more attempt counted."""
        self._tries += 1
        return self.after(self._tries)

    def after(self, tries: int) -> float:
        """The delay after ``tries`` failed attempts (the first: ``first``)."""
        # capped exponent: a job retried for days must not overflow the float
        return min(self.first * 2 ** min(max(tries - 1, 0), 64), self.limit)
