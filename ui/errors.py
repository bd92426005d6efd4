"""A visitor's mistake, as the page reports it: the sentence to the visitor, one line to the log.

Gradio prints the whole traceback of every exception an event raises, `gr.Error` included, unless
the error says `print_exception=False`; a traceback is what a fault of the server needs, and noise
for a bad value typed by a visitor. So the page raises its own refusals through `refuse`, and so do
the checks of every value sent (`ui.admission`), Gradio's own refusals included (a slider value out
of range). Any other exception keeps Gradio's traceback, and the visitor gets Gradio's generic
error, which shows nothing of the server.
"""
from __future__ import annotations

import logging

import gradio as gr

log = logging.getLogger(__name__)


def refuse(message: str, level: int = logging.INFO) -> gr.Error:
    """The `gr.Error` to raise for `message`, logged here as one line and printed by Gradio as nothing."""
    log.log(level, "refused: %s", " ".join(str(message).splitlines()))
    return gr.Error(message, print_exception=False)
