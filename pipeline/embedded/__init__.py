"""The embedded default model: a small Sana-family model trained on procedural shape pictures.

This module only holds the constants the engine's "embedded" preset reads; it imports nothing
heavy. Training is `python -m pipeline train-embedded` (TRAINING.md has the runs behind the
recipe), evaluation `python -m pipeline evaluate-embedded`.
"""
from pathlib import Path

# The shipped model, in diffusers folder format (assets/model at the repository root).
MODEL_DIR = Path(__file__).resolve().parents[2] / "assets" / "model"
NATIVE_SIZE = 64  # pixels, square: the default size, and the only size of training stages 1-3
# The size multiple the architecture needs: the DC-AE's 4x compression times the patch size 2.
SIZE_MULTIPLE = 8
# The size bucket of each format, by aspect ratio: multiples of SIZE_MULTIPLE with about
# 64x64's pixel count, the ratio as close as that allows (stage 4 trains at each of these).
FORMAT_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (64, 64),
    "4:5": (56, 72),  # 0.778, 2.8 % off
    "9:16": (48, 88),  # 0.545, 3.0 % off
    "16:9": (88, 48),  # 1.833, 3.1 % off
    "1.91:1": (96, 48),  # 2.0, 4.7 % off; 88x48 would be the 16:9 size again
    "3:2": (72, 48),  # exact, 84 % of the pixels; 80x56 would be 4.8 % off
    "2:3": (48, 72),
}
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
