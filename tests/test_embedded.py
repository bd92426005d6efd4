"""The embedded model: prompt grammar, held-out split, the checker, and the shipped model's adherence."""
import random

import numpy as np
import pytest

from pipeline import embedded
from pipeline.embedded import data
from pipeline.embedded.checker import check, read


def test_held_out_split_is_a_fixed_tenth_never_sampled_in_training():
    combos = data.all_combos()
    held_out = data.held_out_combos()
    assert len(combos) == 3 * 8 * 7 * 5
    assert len(held_out) == round(len(combos) / 10)
    assert held_out == data.held_out_combos()
    rng = random.Random(0)
    _, _, scenes = data.training_batch(rng, 64, 2000)
    assert not {scene.combo for scene in scenes} & held_out
    assert all(scene.colour != scene.background for scene in scenes)


def test_every_value_still_appears_in_training():
    training = data.training_combos()
    for index, values in enumerate((data.SHAPES, data.COLOURS, data.COLOURS, data.POSITIONS)):
        assert {combo[index] for combo in training} == set(values)


def test_prompts_name_every_attribute_in_the_contract_words():
    rng = random.Random(1)
    scene = data.Scene("triangle", "orange", "purple", "center", "small")
    for form in data.TRAIN_FORMS:
        prompt = data.describe(scene, form, rng)
        words = set(prompt.replace(",", " ").split())
        assert {"triangle", "orange", "purple"} <= words
        assert words & {"small", "little"}
        assert words & {"center", "middle"}
        assert "a orange" not in prompt


def test_contract_examples_are_eval_forms():
    rng = random.Random(2)
    scene = data.Scene("circle", "red", "blue", "left", "large")
    prompts = {data.describe(scene, form, rng) for form in data.EVAL_FORMS for _ in range(20)}
    assert "a large red circle on the left, blue background" in prompts
    assert "a big red circle at the left on a blue background" in prompts


def test_evaluation_set_is_fixed_and_covers_every_unseen_combination_and_form():
    items = data.evaluation_set()
    assert items == data.evaluation_set()
    assert len(items) >= 200
    unseen = [scene.combo for scene, _, _, is_unseen in items if is_unseen]
    assert set(unseen) == data.held_out_combos()
    assert all((scene.combo in data.held_out_combos()) == is_unseen for scene, _, _, is_unseen in items)
    assert len({seed for _, _, seed, _ in items}) == len(items)
    words = " ".join(prompt for _, prompt, _, _ in items).split()
    assert {"big", "little", "middle", "large", "small", "center"} <= set(words)


def test_tokenizer_gives_one_token_per_word_and_bos_for_the_empty_prompt():
    from pipeline.embedded.model import build_tokenizer

    tokenizer = build_tokenizer()
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("small green triangle, top, white background").input_ids)
    assert tokens == ["<bos>", "small", "▁green", "▁triangle", ",", "▁top", ",", "▁white", "▁background"]
    empty = tokenizer("", padding="max_length", max_length=embedded.MAX_SEQUENCE_LENGTH)
    assert empty.attention_mask == [1] + [0] * (embedded.MAX_SEQUENCE_LENGTH - 1)


def test_untrained_text_encoder_keeps_each_word_apart_from_its_context():
    """Residual branches start at zero: swapping one word changes that word's output only."""
    import torch

    from pipeline.embedded.model import ModelConfig, build_text_encoder, build_tokenizer

    tokenizer = build_tokenizer()
    encoder = build_text_encoder(ModelConfig(), len(tokenizer))
    ids = tokenizer(["a large red circle on the left, blue background",
                     "a large red circle on the right, blue background"], return_tensors="pt").input_ids
    with torch.no_grad():
        left, right = encoder(ids).last_hidden_state  # (L, D) each
    changed = (left - right).norm(dim=-1) > 0
    assert changed.tolist() == [token in ("▁left", "▁right") for token in tokenizer.convert_ids_to_tokens(ids[0])]
    cosine = torch.nn.functional.cosine_similarity(left[changed], right[changed]).item()
    assert abs(cosine) < 0.5  # two unrelated directions, as far apart as two different words


def test_checker_reads_every_rendered_ground_truth_picture_correctly():
    rng = random.Random(3)
    for combo in data.all_combos():
        for size in data.SIZES:
            scene = data.Scene(*combo, size=size)
            assert check(data.render(scene, embedded.NATIVE_SIZE, rng), scene)["all"], scene


def test_checker_notices_each_wrong_attribute():
    rng = random.Random(4)
    scene = data.Scene("square", "green", "white", "top", "large")
    image = data.render(scene, embedded.NATIVE_SIZE, rng)
    for field, wrong in (("background", "black"), ("colour", "red"), ("position", "bottom"),
                         ("size", "small"), ("shape", "circle")):
        other = data.Scene(**{**scene.__dict__, field: wrong})
        score = check(image, other)
        assert not score[field if field != "colour" else "colour"] and not score["all"]


def test_checker_reports_no_shape_on_a_blank_picture():
    blank = np.full((64, 64, 3), data.COLOURS["blue"], dtype=np.uint8)
    reading = read(blank)
    assert reading.background == "blue" and reading.shape is None


def test_shipped_model_is_small_enough():
    files = [path for path in embedded.MODEL_DIR.rglob("*") if path.is_file()]
    assert files, "assets/model is missing"
    assert max(path.stat().st_size for path in files) < 16 * 2**20
    assert sum(path.stat().st_size for path in files) < 40 * 2**20


@pytest.fixture(scope="module")
def studio():
    from pipeline.studio import Studio

    return Studio.load("embedded", device="cpu")


def test_shipped_model_follows_24_held_out_prompts(studio):
    from pipeline.embedded.evaluate import THRESHOLDS, UNSEEN_ALL_THRESHOLD, accuracy, generate_and_score

    items = data.evaluation_set()[:24]
    rows = generate_and_score(studio, items, embedded.DEFAULT_STEPS, embedded.DEFAULT_GUIDANCE)
    acc = accuracy(rows)
    for column, threshold in THRESHOLDS.items():
        assert acc[column] >= threshold - 10, (column, acc)
    unseen = [row for row in rows if row.unseen]
    assert unseen and accuracy(unseen)["all"] >= UNSEEN_ALL_THRESHOLD - 10, accuracy(unseen)


def test_a_retrained_copy_runs_with_the_embedded_settings(tmp_path):
    """`evaluate-embedded --model DIR` (a `train --out DIR` folder) uses the embedded preset's settings."""
    import shutil

    from pipeline.models import resolve

    copy = tmp_path / "retrained"
    shutil.copytree(embedded.MODEL_DIR, copy)
    source = resolve(str(copy), like="embedded")
    assert source.path == copy.resolve() and source.encode_options == resolve("embedded").encode_options
    assert source.encode_options["max_sequence_length"] == 32
    assert resolve(str(copy)).encode_options == {}  # a plain folder gets the family's defaults


def test_latent_edge_mask_marks_the_latent_pixels_on_the_outline():
    """Stage 2's shape-edge loss weight falls on the outline's latent pixels, not inside or outside."""
    import torch

    from pipeline.embedded.train import latent_edge_mask, to_tensor

    picture = np.full((1, 64, 64, 3), 240, dtype=np.uint8)
    picture[0, 16:48, 16:48] = 20  # a black square, pixels 16..47; its edges mark pixels 14..17 and 46..49
    mask = latent_edge_mask(to_tensor(picture), (16, 16))[0, 0]  # 4x4 pixels per latent pixel
    expected = torch.zeros(16, 16)
    expected[3:13, 3:13] = 1
    expected[5:11, 5:11] = 0
    assert torch.equal(mask, expected)
