"""The studio page: layout, then wiring. The event functions are in `ui.handlers`.

    demo = build_demo(studio)
    demo.queue(**queue_options(max_size=16)).launch(**LAUNCH_OPTIONS)

Generation has one API endpoint, `generate`, behind both Enter in the prompt and the Generate
button; `cancel` stops the caller's own running generation; every other event is private to the
page.
"""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from pipeline.request import MAX_IMAGES, MAX_PROMPT_CHARS, MAX_SEED
from ui.formats import format_choices, format_for_size
from ui.handlers import RunControl, StudioHandlers
from ui.settings import COLOR_MODES, DENOISE_MODES, OFF, UPSCALE_CHOICES

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CSS_PATH = ASSETS / "studio.css"
EXAMPLES_PATH = ASSETS / "examples.json"

# Every generation shares the device. Up to `studio.max_batch` requests are handed to the studio
# at once; it runs one forward batch at a time, serving compatible waiting requests together.
DEVICE_QUEUE = "device"
# (every, age) in seconds: each hour, delete generated and uploaded files older than a day.
DELETE_CACHE = (3600, 86400)
DEFAULT_QUEUE_SIZE = 16
LAUNCH_OPTIONS = {
    # Uploads are PNGs to reuse, colour references and learned upscaler weights; the common
    # ESRGAN x4 weights are about 67 MB.
    "max_file_size": "100mb",
    "css_paths": [CSS_PATH],
    "footer_links": ["api"],
}


def queue_options(max_size: int = DEFAULT_QUEUE_SIZE) -> dict:
    """Arguments of `demo.queue`: a bounded queue (visitors past `max_size` are told it is full)."""
    if max_size < 1:
        raise ValueError(f"queue size must be at least 1, got {max_size}")
    return {"max_size": max_size, "default_concurrency_limit": 1}


def build_demo(studio) -> gr.Blocks:
    """The Blocks app for one loaded studio."""
    limits = studio.limits
    examples = json.loads(EXAMPLES_PATH.read_text(encoding="utf-8"))

    with gr.Blocks(title="Studio", analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        run_control = gr.State(RunControl())
        history = gr.State([])
        last_run = gr.State([])

        gr.Markdown("# Studio\nType what you want to see, pick a format, press **Generate**.")
        status = gr.Markdown(label="Status", elem_id="status")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                prompt = gr.Textbox(label="Prompt", lines=1, max_lines=4, max_length=MAX_PROMPT_CHARS, elem_id="prompt",
                                    placeholder="a large red circle on the left, blue background  (Enter generates)")
                negative_prompt = gr.Textbox("", label="Negative prompt", max_length=MAX_PROMPT_CHARS,
                                             placeholder="what to avoid", visible=limits.uses_negative_prompt)
                with gr.Row():
                    run = gr.Button("Generate", variant="primary", elem_id="generate")
                    cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")
                gr.Examples(examples=[[example["prompt"]] for example in examples], inputs=[prompt],
                            label="Examples")
                image_format = gr.Dropdown(format_choices(limits), label="Format",
                                           value=format_for_size(limits.default_width, limits.default_height, limits),
                                           elem_id="format")
                with gr.Row():
                    width = gr.Number(limits.default_width, label="Width", minimum=limits.size_multiple,
                                      step=limits.size_multiple, elem_id="width",
                                      info=f"multiple of {limits.size_multiple}")
                    height = gr.Number(limits.default_height, label="Height", minimum=limits.size_multiple,
                                       step=limits.size_multiple, elem_id="height",
                                       info=f"at most {limits.max_pixels:,} pixels")
                num_images = gr.Slider(1, MAX_IMAGES, 1, step=1, label="Number of images",
                                       info="image k uses seed + k", elem_id="num-images")
                with gr.Accordion("Seed, steps and guidance", open=True):
                    with gr.Row():
                        seed = gr.Slider(0, MAX_SEED, 0, step=1, label="Seed", scale=3, elem_id="seed",
                                         info="after each run: the seed it used")
                        random_seed = gr.Checkbox(False, label="Random seed", scale=1, elem_id="random-seed")
                    steps = gr.Slider(limits.steps.min, limits.steps.max, limits.steps.default, step=1,
                                      label="Steps", elem_id="steps")
                    guidance = gr.Slider(
                        limits.guidance.min, max(limits.guidance.max, limits.guidance.min + 0.1),
                        limits.guidance.default, step=0.1, label="Guidance", elem_id="guidance",
                        interactive=limits.uses_guidance,
                        info=None if limits.uses_guidance else "This model does not use guidance.")
                with gr.Accordion("Post-processing", open=False, elem_id="postprocess"):
                    denoise = gr.Radio(list(DENOISE_MODES), value=OFF, label="Denoise")
                    denoise_strength = gr.Slider(0, 1, 0.5, step=0.05, label="Denoise strength", visible=False)
                    color = gr.Radio(list(COLOR_MODES), value=OFF, label="Colour correction")
                    color_reference = gr.Image(type="filepath", sources=["upload"], label="Reference image",
                                               visible=False, height=160)
                    color_palette = gr.Textbox("", label="Palette", placeholder="#1E88E5, #FFC107, #212121",
                                               visible=False)
                    color_strength = gr.Slider(0, 1, 1, step=0.05, label="Colour strength", visible=False)
                    upscale = gr.Radio(list(UPSCALE_CHOICES), value="1", label="Upscale")
                    upscaler = gr.File(label="Learned upscaler weights (.safetensors or .pth, optional)",
                                       file_types=[".safetensors", ".pth"], visible=False, height=80)
                with gr.Accordion("Reuse settings", open=False, elem_id="reuse"):
                    reuse = gr.File(label="Drop a PNG made by this studio", file_types=[".png"],
                                    elem_id="reuse-file", height=100)
            with gr.Column(scale=3, min_width=320):
                gallery = gr.Gallery(label="Results", format="png", columns=2, height=720, object_fit="contain",
                                     buttons=["download", "fullscreen"], interactive=False, elem_id="results")
                comparison = gr.ImageSlider(label="Before / after", format="png", type="filepath",
                                            visible=False, interactive=False, elem_id="comparison")
                history_gallery = gr.Gallery(label="History (this browser session, newest first)", format="png",
                                             columns=8, height=220, object_fit="contain", interactive=False, fit_columns=False,
                                             buttons=["download"], elem_id="history")

        controls = {
            "prompt": prompt, "negative_prompt": negative_prompt, "seed": seed, "random_seed": random_seed,
            "steps": steps, "guidance": guidance, "width": width, "height": height, "num_images": num_images,
            "denoise": denoise, "denoise_strength": denoise_strength, "color": color,
            "color_reference": color_reference, "color_palette": color_palette, "color_strength": color_strength,
            "upscale": upscale, "upscaler": upscaler, "format": image_format, "status": status,
        }
        handlers = StudioHandlers(studio, Path(demo.GRADIO_CACHE) / "studio", controls)

        generate_event = gr.on(
            triggers=[prompt.submit, run.click], fn=handlers.generate,
            inputs_kwargs={**{name: controls[name] for name in (
                "prompt", "negative_prompt", "seed", "random_seed", "steps", "guidance", "width", "height",
                "num_images", "denoise", "denoise_strength", "color", "color_reference", "color_palette",
                "color_strength", "upscale", "upscaler")},
                "run_control": run_control, "history": history},
            outputs=[gallery, comparison, seed, status, history, last_run],
            api_name="generate", concurrency_limit=studio.max_batch, concurrency_id=DEVICE_QUEUE,
            show_progress_on=gallery)
        generate_event.then(handlers.show_run, inputs=[history, last_run], outputs=[history_gallery, comparison],
                            api_visibility="private", queue=False, show_progress="hidden")
        cancel.click(handlers.cancel, inputs=run_control, outputs=status, cancels=[generate_event],
                     api_name="cancel", queue=False)

        image_format.input(handlers.apply_format, inputs=image_format, outputs=[width, height],
                           api_visibility="private", queue=False, show_progress="hidden")
        gr.on(triggers=[width.input, height.input], fn=handlers.match_format, inputs=[width, height],
              outputs=image_format, api_visibility="private", queue=False, show_progress="hidden")
        gr.on(triggers=[denoise.change, color.change, upscale.change], fn=handlers.show_postprocess_controls,
              inputs=[denoise, color, upscale],
              outputs=[denoise_strength, color_reference, color_palette, color_strength, upscaler],
              api_visibility="private", queue=False, show_progress="hidden")
        gallery.select(handlers.show_comparison, inputs=last_run, outputs=comparison,
                       api_visibility="private", queue=False, show_progress="hidden")
        reuse.upload(handlers.reuse_settings, inputs=reuse, outputs=list(controls.values()),
                     api_visibility="private", queue=False)
        demo.load(handlers.status, outputs=status, api_visibility="private", queue=False)
    return demo
