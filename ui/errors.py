"""A visitor's mistake, as the page reports it: the sentence to the visitor, one line to the log.

Gradio prints the whole traceback of every exception an event raises, `gr.Error` included, unless
the error says `print_exception=False`; a traceback is what a fault of the server needs, and noise
for a bad value typed by a visitor. So the page raises its own refusals through `refuse`, and the
components of the generate controls pass Gradio's own refusals (a slider value out of range, a
choice not offered, a file of the wrong type) through `refuse_quietly` in the same way. Any other
exception keeps Gradio's traceback.
"""
from __future__ import annotations

import logging

import gradio as gr

log = logging.getLogger(__name__)


def refuse(message: str, level: int = logging.INFO) -> gr.Error:
    """The `gr.Error` to raise for `message`, logged here as one line and printed by Gradio as nothing."""
    log.log(level, "refused: %s", " ".join(str(message).splitlines()))
    return gr.Error(message, print_exception=False)


def refuse_quietly(component: gr.components.Component) -> gr.components.Component:
    """`component`, whose refusals of a sent value go through `refuse`; returns it.

    Gradio checks a value in the component's `preprocess` and raises its `gr.Error` there, before
    any handler runs, so this instance's `preprocess` is wrapped rather than the handler.
    """
    preprocess = component.preprocess

    def refusing_preprocess(payload):
        try:
            return preprocess(payload)
        except gr.Error as error:
            raise refuse(error.message) from None

    component.preprocess = refusing_preprocess
    return component
