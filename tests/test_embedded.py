"""The embedded model: prompt grammar, held-out split, the checker, the shipped model's adherence
and resumable training."""
import random
from pathlib import Path

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


def test_shape_box_mask_covers_the_shape_with_its_margin():
    from pipeline.embedded.evaluate import BOX_MARGIN, shape_box_mask

    scene = data.Scene("triangle", "red", "white", "left", "small")
    picture = data.render(scene, embedded.NATIVE_SIZE, random.Random(5))
    mask = shape_box_mask(picture, scene)
    shape = (picture != data.COLOURS["white"]).any(axis=-1)
    assert (mask[shape] == 255).all()
    ys, xs = np.nonzero(mask)
    shape_ys, shape_xs = np.nonzero(shape)
    assert xs.min() == max(shape_xs.min() - BOX_MARGIN, 0) and ys.max() == shape_ys.max() + BOX_MARGIN


def test_extended_canvas_is_read_in_the_pictures_own_coordinates():
    from pipeline.embedded.evaluate import read_extended

    scene = data.Scene("circle", "blue", "yellow", "right", "large")
    picture = data.render(scene, 64, random.Random(6))
    canvas = np.zeros((64, 128, 3), dtype=np.uint8)
    canvas[:] = data.COLOURS["yellow"]
    canvas[:, 32:96] = picture
    assert read_extended(canvas, scene, 32) == {"border": 100.0, "position": True, "shape": True}
    canvas[20:44, 0:24] = data.COLOURS["blue"]  # a second shape in the left border
    reading = read_extended(canvas, scene, 32)
    assert not reading["position"] and reading["border"] == pytest.approx(100 * (1 - 24 * 24 / (64 * 64)))


@pytest.mark.parametrize("task", ["inpaint", "extend", "vary"])
def test_image_task_scores_pictures_into_its_table(studio, task):
    from pipeline.embedded.evaluate import IMAGE_FIGURES, SCORERS, image_table, rendered_inputs

    rows = SCORERS[task](studio, rendered_inputs(2), embedded.DEFAULT_STEPS, embedded.DEFAULT_GUIDANCE)
    lines = image_table(task, rows).splitlines()
    assert all(figure.name in lines[0] for figure in IMAGE_FIGURES[task])
    assert len(lines) == len(rows) + 2 and lines[-1].startswith("threshold")
    assert all(row["n"] == 2 for row in rows.values())
    if task == "inpaint":  # feather 0: every pixel outside the mask is the input's
        assert [row["outside identical"] for row in rows.values()] == [2, 2]
    if task == "extend":  # in passes, and the same canvas at once
        assert list(rows) == ["64x64 to 128x64", "at once (compare)"]


def test_extends_comparison_row_has_no_threshold():
    from pipeline.embedded.evaluate import AT_ONCE, image_failures

    row = {"n": 48, "position kept": 100.0, "shape kept": 100.0, "border right": 99.7, "border >= 95%": 100.0}
    rows = {"64x64 to 128x64": row, AT_ONCE: {**row, "border >= 95%": 50.0}}
    assert image_failures("extend", rows) == []
    rows["64x64 to 128x64"] = {**row, "border >= 95%": 93.75}
    assert image_failures("extend", rows) == ["64x64 to 128x64 border >= 95%: 93.8% < 95%"]


def test_evaluate_command_runs_an_image_task(capsys):
    from pipeline.commands import main

    assert main(["evaluate-embedded", "--task", "vary", "--limit", "1"]) == 0
    printed = capsys.readouterr().out
    assert "vary on 1 rendered 64x64 pictures at strength 0.3" in printed and "all five kept" in printed
    assert "threshold" in printed


def test_evaluate_command_takes_an_image_tasks_strength(capsys):
    from pipeline.commands import main

    assert main(["evaluate-embedded", "--task", "vary", "--limit", "1", "--steps", "2", "--strength", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "at strength 0.5," in printed and "\nstrength 0.5 " in printed  # the header and the row
    assert main(["evaluate-embedded", "--task", "extend", "--limit", "1", "--strength", "1.5"]) == 2
    assert capsys.readouterr().err.startswith("error: strength must be")
    assert main(["evaluate-embedded", "--strength", "0.5"]) == 2
    assert capsys.readouterr().err == "error: --strength is for --task inpaint, extend, vary, not --task text\n"


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


def test_corner_mask_marks_the_corners_of_each_objects_box_outside_its_inscribed_ellipse():
    """The corner loss weight falls where a circle, a square and a triangle of one box differ."""
    import torch

    from pipeline.embedded.train import corner_mask, latent_corner_mask

    picture = np.full((1, 64, 64, 3), 240, dtype=np.uint8)
    picture[0, 8:24, 8:24] = (220, 40, 40)  # a red square, pixels 8..23
    picture[0, 40:48, 30:60] = (40, 40, 220)  # a blue bar, 30 wide and 8 high
    mask = corner_mask(picture)[0, 0]
    y, x = np.mgrid[0:64, 0:64] + 0.5
    square = ((x - 16) / 8) ** 2 + ((y - 16) / 8) ** 2 > 1
    bar = ((x - 45) / 15) ** 2 + ((y - 44) / 4) ** 2 > 1
    expected = np.zeros((64, 64), dtype=bool)
    expected[8:24, 8:24] = square[8:24, 8:24]
    expected[40:48, 30:60] = bar[40:48, 30:60]
    assert torch.equal(mask, torch.from_numpy(expected).float())
    assert mask[8, 8] == 1 and mask[16, 16] == 0 and mask[8, 16] == 0  # a corner, the centre, an edge's middle
    latent = latent_corner_mask(picture, (16, 16))[0, 0]
    assert latent[2, 2] == 1 and latent[4, 4] == 0 and latent[0, 0] == 0


def test_embedded_library_draws_no_progress_bars():
    """Training and evaluation report progress through callbacks; the commands draw the bars."""
    import ast

    for path in sorted(Path(embedded.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert "tqdm" not in imported, f"{path.name} imports tqdm"


class _Interrupted(Exception):
    pass


def _fit_line(state_path, total_steps, checkpoint_every, stop_after=None, events=None):
    """A StageLoop on a 1-layer model whose batches depend on the step only; the trained weights."""
    import torch

    from pipeline.embedded.loop import StageLoop

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    loop = StageLoop(state_path, total_steps, {"model": model}, optimizer, checkpoint_every=checkpoint_every)

    def step(index: int) -> float:
        if index == stop_after:
            raise _Interrupted
        generator = torch.Generator().manual_seed(index)
        x = torch.randn(8, 3, generator=generator)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    loop.run(step, task="fit", on_progress=events.append if events is not None else None,
             finish=lambda: {"bias": model.bias.item()})
    return model.state_dict(), loop.state


def test_stage_loop_resumed_after_an_interruption_ends_with_the_same_weights(tmp_path):
    import torch

    uninterrupted, state = _fit_line(tmp_path / "straight.pt", 10, checkpoint_every=3)
    assert state["step"] == 10 and state["bias"] == uninterrupted["bias"].item()

    path = tmp_path / "resumed.pt"
    with pytest.raises(_Interrupted):
        _fit_line(path, 10, checkpoint_every=3, stop_after=7)  # steps 0..6 done, checkpoint at 6
    events = []
    resumed, state = _fit_line(path, 10, checkpoint_every=3, events=events)
    assert [(event.step, event.total) for event in events] == [(6, 10), (7, 10), (8, 10), (9, 10), (10, 10)]
    assert events[0].loss is None and all(event.loss is not None for event in events[1:])
    for name, tensor in uninterrupted.items():
        assert torch.equal(resumed[name], tensor), f"{name} differs after resuming"

    events = []
    again, state = _fit_line(path, 10, checkpoint_every=3, events=events)  # finished: nothing runs
    assert events == [] and state["step"] == 10 and state["bias"] == uninterrupted["bias"].item()
    assert all(torch.equal(again[name], tensor) for name, tensor in uninterrupted.items())


# A few seconds: two steps per stage, the smallest pool, no warm-up pool.
TINY_TRAINING = ["--vae-steps", "2", "--steps", "2", "--batch", "2", "--pool-size", "256",
                 "--refine-steps", "2", "--position-warmup-steps", "0", "--format-steps", "2"]


@pytest.fixture
def torch_threads():
    """The training command sets torch's thread count for the process; the other tests keep theirs."""
    import torch

    threads = torch.get_num_threads()
    yield threads
    torch.set_num_threads(threads)


def test_train_command_writes_a_model_and_resumes_from_its_checkpoints(tmp_path, capsys, torch_threads):
    from pipeline.commands import main

    out = tmp_path / "model"
    args = ["train-embedded", "--out", str(out), *TINY_TRAINING, "--threads", str(torch_threads)]
    assert main([*args, "--stages", "1"]) == 0
    printed = capsys.readouterr().out
    assert "stage 1 done" in printed and "stage 2 not run here" in printed
    assert (tmp_path / "model.state" / "stage1.pt").exists()

    args = [*args, "--stages", "1,2,3,4"]
    assert main(args) == 0  # stage 1 is read back, stages 2, 3 and 4 run
    captured = capsys.readouterr()
    assert "stage 3 done" in captured.out and "stage 4 done" in captured.out and "done after" in captured.out
    assert "denoiser:" in captured.err and "formats: step 2/2" in captured.err
    assert "decoder:" not in captured.err.replace("refine decoder:", ""), "stage 1 ran again"
    files = {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()}
    assert {"model_index.json", "transformer/diffusion_pytorch_model.safetensors"} <= {str(p) for p in files}

    assert main(args) == 0  # every stage finished: nothing trains, the same bytes are exported
    captured = capsys.readouterr()
    assert "done after" in captured.out and "denoiser" not in captured.err
    assert {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()} == files


def test_train_command_rejects_bad_settings_in_one_line(tmp_path, capsys):
    from pipeline.commands import main

    assert main(["train-embedded", "--out", str(tmp_path), "--stages", "2,9"]) == 2
    assert capsys.readouterr().err == ("error: --stages must be stage numbers from 1 to 8 separated by "
                                       "commas, such as 1,2,3,4 or 3; got '2,9'\n")
    assert main(["train-embedded", "--out", str(tmp_path), "--stages", "3,4", "--init", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("error: --init starts one of stages 4 to 8 from a trained model: use it "
                                       "with stages from 4 to 8 (such as --stages 7,8), not --stages 3,4\n")
    assert main(["train-embedded", "--out", str(tmp_path), "--stages", "4", "--init", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: --init must be a model folder with a model_index.json; {tmp_path} has none\n"
    assert main(["train-embedded", "--out", str(tmp_path), "--pool-size", "300"]) == 2
    assert capsys.readouterr().err == "error: pool_size must be a multiple of 256, at least 256, got 300\n"
    assert not list(tmp_path.iterdir())
