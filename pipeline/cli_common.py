"""What every `python -m pipeline` command shares: bad input is one `error:` line and exit 2."""
from __future__ import annotations

import argparse
import sys

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, not argparse's usage block."""

    def error(self, message: str):
        raise SystemExit(fail(message))
