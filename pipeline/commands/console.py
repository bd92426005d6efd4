"""What every command-line entry point shares: one-line errors, exit codes and a quiet console.

The process-wide settings of a command-line run (log format and levels, library warnings and
loading bars, torch.compile's fallback) are made here, by the functions below, which the
commands and `app.py` call; the engine itself never changes them.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1

LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"
# Libraries whose INFO lines and warnings are noise on a user's console unless --verbose.
NOISY_LOGGERS = ("diffusers", "transformers", "httpx", "httpcore", "urllib3", "huggingface_hub", "torch")


def fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, not argparse's usage block."""

    def error(self, message: str):
        raise SystemExit(fail(message))


def configure(*, verbose: bool = False, level: int = logging.WARNING) -> None:
    """Set up the console of this process; call once, before the libraries are imported.

    Quiet by default: the project's own log lines at `level` and up, no loading bars, no library
    warnings. `verbose` shows everything, libraries included, at INFO.
    """
    logging.basicConfig(level=logging.INFO if verbose else level, format=LOG_FORMAT)
    if verbose:
        return
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # Read by huggingface_hub, diffusers and transformers when they are first imported.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    # torchvision installed beside another torch build warns about its image codecs on import;
    # nothing here decodes images with torchvision.
    warnings.filterwarnings("ignore", message="Failed to load image Python extension")
    warnings.filterwarnings("ignore", category=FutureWarning)


def quiet_libraries(*, verbose: bool = False) -> None:
    """No loading bars from diffusers and transformers; call just before loading a model.

    diffusers reads no environment variable for its bars, so this imports both libraries: it is
    kept apart from `configure` so that `--help` and bad input answer without loading them.
    """
    if verbose:
        return
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.disable_progress_bar()
        library.set_verbosity_error()


def allow_compile_fallback() -> None:
    """Let a torch.compile graph that fails to compile run eagerly instead of failing the request.

    Process-wide (torch._dynamo's config), so set only by entry points that compile.
    """
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
