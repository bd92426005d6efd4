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

from pipeline.commands.console import OneLineParser, configure, fail
from pipeline.commands.options import add_model_arguments, env_flag, prepare_process

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
    add_hosting_arguments(parser)
    parser.add_argument("--verbose", action="store_true", help="library logs, loading bars and full tracebacks")
    return parser.parse_args(argv)


def add_hosting_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.hosting import on_space

    group = parser.add_argument_group("public hosting (README: Hosting it publicly)")
    safety = group.add_mutually_exclusive_group()
    safety.add_argument("--safety", dest="safety", action="store_true", default=env_flag("SAFETY") if "SAFETY" in os.environ else on_space(),
                        help="refuse prompts with listed words and, with --safety-image-model, withhold flagged "
                             "pictures (env SAFETY=1; on by default on a Hugging Face Space)")
    safety.add_argument("--no-safety", dest="safety", action="store_false", help="turn the content gate off")
    group.add_argument("--safety-words", default=os.environ.get("SAFETY_WORDS"),
                       help="the host's own word list, one word or phrase per line (env SAFETY_WORDS; "
                            "default: assets/safety/blocked_words.txt)")
    group.add_argument("--safety-llm", action="store_true", default=env_flag("SAFETY_LLM"),
                       help="also ask the loaded model's own LLM whether a prompt is one to refuse (models whose "
                            "tokenizer has a chat template; env SAFETY_LLM=1)")
    group.add_argument("--safety-image-model", default=os.environ.get("SAFETY_IMAGE_MODEL"),
                       help="hub id or folder of an image classifier with an 'nsfw' label "
                            "(env SAFETY_IMAGE_MODEL; default: no image check)")
    group.add_argument("--watermark", action="store_true", default=env_flag("WATERMARK"),
                       help="hide an invisible 'AI-generated' watermark in every picture of 256 pixels a side "
                            "or more (env WATERMARK=1)")


def safety_settings(args: argparse.Namespace):
    """The content gate's settings the flags ask for, or None when it is off."""
    if not args.safety:
        return None
    from pipeline.safety import SafetySettings

    words = {"words": args.safety_words} if args.safety_words else {}
    return SafetySettings(use_model_llm=args.safety_llm, image_classifier=args.safety_image_model, **words)


def main(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed as one line
        return int(exit_.code or 0)
    configure(verbose=args.verbose, level=logging.INFO)
    import ui
    from pipeline.hosting import on_gpu
    from pipeline.models import ModelNotAvailable
    from pipeline.studio import Studio

    started = time.perf_counter()
    try:
        options = prepare_process(args)
        studio = Studio.load(args.model, device=args.device, speed_options=options, max_batch=args.batch_size,
                             safety=safety_settings(args), watermark=args.watermark, device_wrapper=on_gpu())
        queue = ui.queue_options(args.queue_size)
    except (ModelNotAvailable, ValueError) as error:
        return fail(str(error))
    except OSError as error:  # a model file the loader could not read, in words of the library that read it
        return fail(f"cannot load model {args.model!r}: {' '.join(str(error).split())}")
    log.info("model %s (%s) ready on %s in %.1f s; content gate %s, watermark %s; serving",
             studio.source.reference, studio.family.pipeline_class, studio.device, time.perf_counter() - started,
             "on" if studio.safety else "off", "on" if studio.watermark else "off")
    demo = ui.build_demo(studio)
    try:
        demo.queue(**queue).launch(server_name=args.host, server_port=args.port, **ui.LAUNCH_OPTIONS)
    except OSError as error:  # the port is taken, or the address is not this machine's
        return fail(f"cannot serve the page: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
