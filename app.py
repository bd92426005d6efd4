"""The studio in a browser: `python app.py [--model REF] [--host H] [--port P] [speed options]`.

Loads the model once (the embedded default unless `--model` or env `MODEL` names a preset, a
local diffusers folder or a hub id), logs what was loaded and how long it took, then serves the
page from `ui/`. With `--backend ray[=ADDRESS]` the page loads no model: it joins the Ray cluster
and sends each generation to the studio deployed there (`python -m pipeline serve`).
The prompt writer behind the page's Enhance button is the model's own unless `--enhancer` names a
causal LM or an OpenAI-compatible URL#MODEL, whose key is read from ENHANCER_API_KEY only;
`--auto-enhance` ticks the page's auto-enhance box.
Every option also reads an environment variable (named in `--help`); Gradio's own variables
(GRADIO_SERVER_NAME, GRADIO_SERVER_PORT, ...) apply when --host / --port are not given.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from pipeline.commands.console import OneLineParser, configure, fail
from pipeline.commands.options import add_enhancer_argument, add_model_arguments, env_flag, prepare_process

log = logging.getLogger("studio")


def port_number(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be from 1 to 65535, got {port}")
    return port


def backend(text: str) -> tuple[str, str | None]:
    """("local", None), or ("ray", the cluster's address: "auto" when none is given)."""
    name, _, address = text.partition("=")
    if name == "local" and not address:
        return "local", None
    if name == "ray":
        return "ray", address or "auto"
    raise argparse.ArgumentTypeError(f"backend must be local, ray or ray=ADDRESS, got {text!r}")


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
    parser.add_argument("--backend", type=backend, default=os.environ.get("BACKEND", "local"),
                        help="local: load the model in this process; ray[=ADDRESS]: send generations to the studio "
                             "deployed on that Ray cluster (README: Scaling out; env BACKEND; default local)")
    add_model_arguments(parser)
    writer = parser.add_argument_group("prompt writer (README: Prompt writer)")
    add_enhancer_argument(writer)
    writer.add_argument("--auto-enhance", action="store_true", default=env_flag("AUTO_ENHANCE"),
                        help="tick the page's auto-enhance box: a prompt with no enhanced text is rewritten by the "
                             "prompt writer before it is drawn (env AUTO_ENHANCE=1)")
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

    if args.backend[0] == "ray":
        return serve_deployment(args)
    started = time.perf_counter()
    try:
        options = prepare_process(args)
        studio = Studio.load(args.model, device=args.device, speed_options=options, max_batch=args.batch_size,
                             safety=safety_settings(args), watermark=args.watermark, device_wrapper=on_gpu(),
                             enhancer=args.enhancer)
        queue = ui.queue_options(args.queue_size)
    except (ModelNotAvailable, ValueError) as error:
        return fail(str(error))
    except OSError as error:  # a model file the loader could not read, in words of the library that read it
        return fail(f"cannot load model {args.model!r}: {' '.join(str(error).split())}")
    log.info("model %s (%s) ready on %s in %.1f s; content gate %s, watermark %s; serving",
             studio.source.reference, studio.family.pipeline_class, studio.device, time.perf_counter() - started,
             "on" if studio.safety else "off", "on" if studio.watermark else "off")
    return launch(studio, queue, args)


def serve_deployment(args: argparse.Namespace) -> int:
    """The page in front of the studio deployed on a Ray cluster: this process loads no model."""
    import ui
    from pipeline.commands.serve import quiet_ray
    from pipeline.serving.client import RayStudio
    from pipeline.serving.cluster import LOCAL_ADDRESS, LOOPBACK_ENVIRONMENT, token_environment

    if args.safety or args.watermark:
        return fail("the content gate and the watermark run where the model runs; with --backend ray leave "
                    "--safety and --watermark off (--no-safety)")
    if args.enhancer or args.auto_enhance:
        return fail("the prompt writer runs where the model runs, which a page with --backend ray does not reach; "
                    "leave --enhancer and --auto-enhance off")
    address = args.backend[1]
    if address.removeprefix("ray://").split(":")[0] in (LOCAL_ADDRESS, "localhost"):
        os.environ.update(LOOPBACK_ENVIRONMENT)  # this process joins as a node on the same loopback address
    os.environ.update(token_environment())
    quiet_ray(verbose=args.verbose)
    try:
        queue = ui.queue_options(args.queue_size)
        studio = RayStudio.join(address, verbose=args.verbose)
    except (ConnectionError, ValueError) as error:
        return fail(str(error))
    log.info("model %s (%s) on the Ray cluster at %s, %d requests at once; serving", studio.source.reference,
             studio.family.pipeline_class, address, studio.max_batch)
    return launch(studio, queue, args)


def launch(studio, queue: dict, args: argparse.Namespace) -> int:
    import ui

    demo = ui.build_demo(studio, auto_enhance=args.auto_enhance)
    try:
        demo.queue(**queue).launch(server_name=args.host, server_port=args.port, **ui.LAUNCH_OPTIONS)
    except OSError as error:  # the port is taken, or the address is not this machine's
        return fail(f"cannot serve the page: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
