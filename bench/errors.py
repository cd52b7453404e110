"""Errors meant for people: the CLI prints their message as one sentence and exits 2 (a
``UserError``) or 128 + the signal's number (an ``Interrupted`` command)."""


class UserError(Exception):
    """Bad input from the user (a path, a flag, a space file); the message names the culprit."""


class Interrupted(Exception):
    """A signal (Ctrl-C's SIGINT, a scheduler's SIGTERM) stopped the command; the message says what
    was kept and how to continue, and the exit status is 128 + the signal's number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class SignalInterrupt(KeyboardInterrupt):
    """Raised by fer-bench's handlers for SIGTERM (and a second SIGINT/SIGTERM during a sweep) so
    that code which already stops cleanly on Ctrl-C stops on them too, knowing which signal came."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
