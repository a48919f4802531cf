"""One exception type for bad input and faults the user can fix.

The CLI prints it as one clear message (what is wrong, then a ---> HINT line on how to fix it)
and exits non-zero without a traceback; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    def __init__(self, message: str, hint: str | None = None, exit_code: int = 2, local: bool = False):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code
        self.local = local  # under torchrun: this rank's own fault (the others did not meet it), so it speaks

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n---> HINT: {self.hint}"


def brief(e: BaseException, limit: int = 200) -> str:
    """An exception in one line, for a note that something optional failed: its type and first line."""
    return f"{type(e).__name__}: {str(e).splitlines()[0][:limit] if str(e) else ''}"


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM, raised from the signal handler the CLI installs.

    A BaseException but not a KeyboardInterrupt, so click does not swallow it into "Aborted!": it
    unwinds every `finally` (temporary folders are removed) up to the CLI, which exits 128 + signal.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
