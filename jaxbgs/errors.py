"""One error type for bad user input, so the CLIs can print it as one readable line."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user: names the file (and row or key) and says how to fix it."""

    def __init__(
        self, problem: str, *, file: object = None, where: str | None = None, fix: str | None = None
    ):
        self.problem, self.file, self.where, self.fix = problem, file, where, fix
        head = ": ".join(str(x) for x in (file, where) if x is not None)
        text = f"{head}: {problem}" if head else problem
        super().__init__(f"{text}. Fix: {fix}" if fix else text)


def count(text: str, minimum: int = 1) -> int:
    """argparse type for counts (resamples, batch sizes, items): a whole number >= `minimum`, so
    a typo is a usage line naming the option, not a numpy error later."""
    import argparse

    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < minimum:
        raise argparse.ArgumentTypeError(f"needs a number >= {minimum}, got {n}")
    return n


def count_or_zero(text: str) -> int:
    """`count` where 0 means "none" (no bootstrap, no permutation test)."""
    return count(text, minimum=0)
