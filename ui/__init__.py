"""The studio's web page (Gradio Blocks): layout and wiring in `ui.layout`, the generate inputs
declared once in `ui.controls`, event functions in `ui.handlers`. Talks only to the engine's
`Studio` object, through what `ui.engine.Engine` declares; never imports torch or diffusers."""
from ui.layout import DEFAULT_QUEUE_SIZE, LAUNCH_OPTIONS, build_demo, queue_options

__all__ = ["DEFAULT_QUEUE_SIZE", "LAUNCH_OPTIONS", "build_demo", "queue_options"]
