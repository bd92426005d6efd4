"""The embedded model's prompt writer: its data, tokenizer, resumable training and the shipped writer."""
from __future__ import annotations

import random

import pytest
import torch
from safetensors.torch import load_file

from pipeline.embedded import data, writer_data
from pipeline.embedded.writer import WRITER_DIR, WriterConfig, build_tokenizer, train
from pipeline.enhance import LanguageModelEnhancer

TINY = WriterConfig(steps=4, batch=4, warmup=2, checkpoint_every=2, width=16, heads=2)


def test_training_resumes_to_the_same_weights(tmp_path):
    assert train(TINY, tmp_path / "straight", tmp_path / "straight.state")
    assert not train(TINY, tmp_path / "resumed", tmp_path / "resumed.state", stop_after=2)
    assert not (tmp_path / "resumed").exists()
    assert train(TINY, tmp_path / "resumed", tmp_path / "resumed.state")
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)


def test_resuming_with_other_settings_is_refused(tmp_path):
    train(TINY, tmp_path / "out", tmp_path / "state", stop_after=2)
    other = WriterConfig(steps=5, batch=4, warmup=2, checkpoint_every=2, width=16, heads=2)
    with pytest.raises(ValueError, match=f"^the state in {tmp_path / 'state'} was made with other settings"):
        train(other, tmp_path / "out", tmp_path / "state")


def test_the_tokenizer_has_one_token_per_word_and_reads_back():
    tokenizer = build_tokenizer()
    prompt = "a small red circle at the top, blue background"
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert len(ids) == 10
    assert tokenizer.decode(ids) == prompt
    assert tokenizer.unk_token_id in tokenizer("a dragon", add_special_tokens=False)["input_ids"]
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "a red circle"}], add_generation_prompt=True,
                                         tokenize=False)
    assert chat == "<bos>a red circle<sep>"


def test_every_contract_prompt_parses_back_to_its_scene():
    rng = random.Random(0)
    for index in range(300):
        scene = data.sample_scene(rng, data.all_combos())
        prompt = data.describe(scene, data.EVAL_FORMS[index % len(data.EVAL_FORMS)], rng)
        assert writer_data.parse(prompt) == scene, prompt
    assert writer_data.parse("a red circle") is None
    assert writer_data.parse("a small red circle at the top, red background") is None


def test_training_never_sees_the_held_out_descriptions():
    held_out = {text for text, _, _, _ in writer_data.evaluation_set()}
    rng = random.Random(1)
    sources = {writer_data.training_example(rng)[0] for _ in range(2000)}
    assert len(held_out) > 150
    assert not sources & held_out


def test_loose_descriptions_name_only_the_given_attributes():
    scene = data.Scene("triangle", "red", "green", "top", "small")
    rng = random.Random(2)
    texts = {writer_data.loose_description(scene, {"background", "shape"}, rng) for _ in range(50)}
    assert all("green" in text and "triangle" in text for text in texts)
    assert not any(word in text for text in texts for word in ("red", "top", "small", "little"))


@pytest.mark.parametrize("description, given", [
    ("a red circle", {"colour": "red", "shape": "circle"}),
    ("something small and blue at the top", {"size": "small", "colour": "blue", "position": "top"}),
    ("green background, triangle", {"background": "green", "shape": "triangle"}),
])
def test_the_shipped_writer_keeps_what_it_is_given(description, given):
    writer = LanguageModelEnhancer.load(WRITER_DIR, max_new_tokens=40)
    for seed in range(3):
        scene = writer_data.parse(writer.enhance(description, seed=seed).text)
        assert scene is not None
        assert {name: getattr(scene, name) for name in given} == given
