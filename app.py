"""The studio in a browser: `python app.py [--model REF] [--host H] [--port P] [--queue-size N] [--batch-size N]`.

Loads the model once (the embedded default unless `--model` or env `MODEL` names a preset, a
local diffusers folder or a hub id), logs what was loaded and how long it took, then serves the
page from `ui/`. Gradio's own variables (GRADIO_SERVER_NAME, GRADIO_SERVER_PORT, ...) apply when
--host / --port are not given.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

log = logging.getLogger("studio")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get("MODEL", "embedded"),
                        help="preset name, local diffusers folder or hub id (default: env MODEL, else embedded)")
    parser.add_argument("--host", help="address to listen on (default: GRADIO_SERVER_NAME, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: GRADIO_SERVER_PORT, else 7860)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--queue-size", type=int, default=int(os.environ.get("QUEUE_SIZE", 16)),
                        help="requests that may wait for the device; more are told the queue is full "
                             "(default: env QUEUE_SIZE, else 16)")
    parser.add_argument("--batch-size", type=int, default=int(os.environ.get("BATCH_SIZE", 4)),
                        help="most compatible waiting requests served together as one forward batch; "
                             "1 serves them one by one (default: env BATCH_SIZE, else 4)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    import ui
    from pipeline.models import ModelNotAvailable, quiet_libraries
    from pipeline.studio import Studio

    quiet_libraries()
    started = time.perf_counter()
    try:
        studio = Studio.load(args.model, device=args.device, max_batch=args.batch_size)
        queue = ui.queue_options(args.queue_size)
    except (ModelNotAvailable, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    log.info("model %s (%s) ready on %s in %.1f s; serving", studio.source.reference,
             studio.family.pipeline_class, studio.device, time.perf_counter() - started)
    demo = ui.build_demo(studio)
    demo.queue(**queue).launch(server_name=args.host, server_port=args.port, **ui.LAUNCH_OPTIONS)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
