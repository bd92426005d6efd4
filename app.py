"""The studio in a browser: `python app.py [--model REF] [--host H] [--port P] [speed options]`.

Loads the model once (the embedded default unless `--model` or env `MODEL` names a preset, a
local diffusers folder or a hub id), logs what was loaded and how long it took, then serves the
page from `ui/`. Every option also reads an environment variable (named in `--help`); Gradio's own
variables (GRADIO_SERVER_NAME, GRADIO_SERVER_PORT, ...) apply when --host / --port are not given.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from pipeline.commands.console import OneLineParser, allow_compile_fallback, configure, fail, quiet_libraries
from pipeline.commands.options import add_model_arguments, speed_options

log = logging.getLogger("studio")


def port_number(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be from 1 to 65535, got {port}")
    return port


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = OneLineParser(prog="python app.py", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", help="address to listen on (default: GRADIO_SERVER_NAME, else 127.0.0.1)")
    parser.add_argument("--port", type=port_number, help="port (default: GRADIO_SERVER_PORT, else 7860)")
    # String defaults from the environment go through `type` too, so a bad value is a usage error.
    parser.add_argument("--queue-size", type=int, default=os.environ.get("QUEUE_SIZE", "16"),
                        help="requests that may wait for the device; more are told the queue is full "
                             "(env QUEUE_SIZE; default 16)")
    parser.add_argument("--batch-size", type=int, default=os.environ.get("BATCH_SIZE", "4"),
                        help="most compatible waiting requests served together as one forward batch; "
                             "1 serves them one by one (env BATCH_SIZE; default 4)")
    add_model_arguments(parser)
    parser.add_argument("--verbose", action="store_true", help="library logs, loading bars and full tracebacks")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed as one line
        return int(exit_.code or 0)
    configure(verbose=args.verbose, level=logging.INFO)
    import ui
    from pipeline.models import ModelNotAvailable
    from pipeline.studio import Studio

    started = time.perf_counter()
    try:
        options = speed_options(args)
        quiet_libraries(verbose=args.verbose)
        if options.compile:
            allow_compile_fallback()
        studio = Studio.load(args.model, device=args.device, speed_options=options, max_batch=args.batch_size)
        queue = ui.queue_options(args.queue_size)
    except (ModelNotAvailable, ValueError) as error:
        return fail(str(error))
    except OSError as error:  # a model file the loader could not read, in words of the library that read it
        return fail(f"cannot load model {args.model!r}: {' '.join(str(error).split())}")
    log.info("model %s (%s) ready on %s in %.1f s; serving", studio.source.reference,
             studio.family.pipeline_class, studio.device, time.perf_counter() - started)
    demo = ui.build_demo(studio)
    try:
        demo.queue(**queue).launch(server_name=args.host, server_port=args.port, **ui.LAUNCH_OPTIONS)
    except OSError as error:  # the port is taken, or the address is not this machine's
        return fail(f"cannot serve the page: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
