"""The embedded default model: a small Sana-family model trained on procedural shape pictures.

This module only holds the constants the engine's "embedded" preset reads; it imports nothing
heavy. Training is `python -m pipeline train-embedded` (TRAINING.md has the runs behind the
recipe), evaluation `python -m pipeline evaluate-embedded`.
"""
from pathlib import Path

# The shipped model, in diffusers folder format (assets/model at the repository root).
MODEL_DIR = Path(__file__).resolve().parents[2] / "assets" / "model"
NATIVE_SIZE = 64  # pixels, square; the model was trained at this size only
MAX_SEQUENCE_LENGTH = 32  # prompt tokens incl. <bos>; the longest grammar prompt is ~20
DEFAULT_STEPS = 8
STEP_RANGE = (1, 50)
DEFAULT_GUIDANCE = 2.0  # the shipped model followed shape words best at 2 (evaluate-embedded --guidance)
GUIDANCE_RANGE = (1.0, 10.0)
# Extra SanaPipeline.encode_prompt arguments: the pipeline's defaults would prepend a long
# "complex human instruction" and pad prompts to 300 tokens; the model was trained on neither.
ENCODE_KWARGS = {"max_sequence_length": MAX_SEQUENCE_LENGTH, "complex_human_instruction": None}
# Extra SanaPipeline.__call__ arguments: the above, and no resolution binning, which would snap
# 64x64 to a 512-pixel bucket.
CALL_KWARGS = {**ENCODE_KWARGS, "use_resolution_binning": False}
