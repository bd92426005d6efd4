"""The optional content gate: the word list on prompts and a transformers image classifier on
pictures, with a tiny random ViT whose output bias decides what it calls unsafe."""
from __future__ import annotations

import logging

import pytest
import torch
from PIL import Image

from pipeline.safety import ImageRefused, PromptRefused, SafetyGate, SafetySettings, read_word_list


def tiny_classifier(folder, unsafe: bool):
    """A ViT image classifier saved as a hub model is; its bias makes every picture safe or unsafe."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, id2label={0: "normal", 1: "nsfw"}, label2id={"normal": 0, "nsfw": 1})
    torch.manual_seed(0)
    model = ViTForImageClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 8.0] if unsafe else [8.0, 0.0]))
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("prompt", ["a nude figure", "NSFW, red circle", "two words: child porn", "Sexy!"])
def test_listed_words_refuse_the_prompt_without_repeating_it(prompt, caplog):
    gate = SafetyGate(SafetySettings())
    with caplog.at_level(logging.INFO, logger="pipeline.safety"), pytest.raises(PromptRefused) as refused:
        gate.check_prompt("a red circle", prompt)
    assert str(refused.value) == ("prompt refused: this studio's host does not allow what it asks for; please "
                                  "describe something else")
    assert [record.getMessage() for record in caplog.records] == ["prompt refused by the word list"]


@pytest.mark.parametrize("prompt", ["a large red circle on the left", "Essex county fair", "a child's kite",
                                    "unexplicitly sexless"])
def test_whole_words_only(prompt):
    SafetyGate(SafetySettings()).check_prompt(prompt)


def test_a_host_word_list(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# comment\nRed Circle  # a phrase\n\nsquare\n", encoding="utf-8")
    assert read_word_list(words) == (("red", "circle"), ("square",))
    gate = SafetyGate(SafetySettings(words=str(words)))
    gate.check_prompt("a red triangle and a circle")
    with pytest.raises(PromptRefused):
        gate.check_prompt("a RED circle")
    with pytest.raises(ValueError, match="safety word list '.*missing.txt' cannot be read"):
        SafetyGate(SafetySettings(words=str(tmp_path / "missing.txt")))


def test_the_image_classifier_withholds_what_it_scores_unsafe(tmp_path):
    pictures = [Image.new("RGB", (48, 40), (200, 30, 30)), Image.new("RGB", (48, 40), (30, 30, 200))]
    safe = SafetyGate(SafetySettings(words=None, image_classifier=tiny_classifier(tmp_path / "safe", False)))
    scores = safe.check_images(pictures)
    assert len(scores) == 2 and max(scores) < 0.001
    assert safe.record(scores[0]) == {"prompt": "off", "image": str(tmp_path / "safe"),
                                      "image_score": round(scores[0], 4)}

    unsafe = SafetyGate(SafetySettings(words=None, image_classifier=tiny_classifier(tmp_path / "unsafe", True)))
    with pytest.raises(ImageRefused, match="image 1 was withheld by this studio's content check"):
        unsafe.check_images(pictures)


def test_a_classifier_without_an_unsafe_label_or_folder_is_one_sentence(tmp_path):
    folder = tiny_classifier(tmp_path / "model", False)
    with pytest.raises(ValueError, match=r"has labels \['normal', 'nsfw'\], none of them in \['violence'\]"):
        SafetyGate(SafetySettings(image_classifier=folder, unsafe_labels=("violence",)))
    with pytest.raises(ValueError, match="safety image classifier '.*nowhere' cannot be loaded"):
        SafetyGate(SafetySettings(image_classifier=str(tmp_path / "nowhere")))


def test_the_model_llm_reads_a_base_encoder_as_the_causal_lm_it_shares_weights_with():
    """A base encoder (Z-Image's Qwen3Model, Sana's Gemma2Model) has no output layer; its tied input
    embeddings are that layer, so it answers exactly as the causal LM with the same weights."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from pipeline.local_tokenizers import qwen_tokenizer
    from pipeline.safety import yes_probability

    config = Qwen3Config(vocab_size=512, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=8, tie_word_embeddings=True)
    torch.manual_seed(0)
    causal = Qwen3ForCausalLM(config).eval()
    tokenizer = qwen_tokenizer()
    for prompt in ("a red circle", "a nude figure"):
        through_lm_head = yes_probability(causal, tokenizer, prompt)
        through_embeddings = yes_probability(causal.model, tokenizer, prompt)
        assert 0.0 < through_lm_head < 1.0
        assert through_embeddings == pytest.approx(through_lm_head, abs=1e-6)


@pytest.mark.parametrize("probability, refused", [(0.9, True), (0.2, False)])
def test_the_model_llm_refuses_at_the_threshold(probability, refused, monkeypatch):
    import pipeline.safety as safety

    asked = []
    monkeypatch.setattr(safety, "yes_probability", lambda model, tokenizer, text: asked.append(text) or probability)
    tokenizer = type("Tokenizer", (), {"chat_template": "{{ messages }}"})()
    gate = SafetyGate(SafetySettings(words=None, use_model_llm=True), llm=(object(), tokenizer))
    if refused:
        with pytest.raises(PromptRefused):
            gate.check_prompt("a castle")
    else:
        gate.check_prompt("a castle")
    assert asked == ["a castle"]
    assert gate.record()["prompt"] == "model LLM"


def test_a_model_llm_without_a_chat_template_is_one_sentence():
    tokenizer = type("Tokenizer", (), {"chat_template": None})()
    with pytest.raises(ValueError, match="its tokenizer has no chat template"):
        SafetyGate(SafetySettings(use_model_llm=True), llm=(object(), tokenizer))


def test_a_template_without_a_system_turn_gets_the_question_in_the_user_turn():
    from pipeline.safety import MODERATION_QUESTION, _chat

    class GemmaLike:
        def apply_chat_template(self, messages, **options):
            if messages[0]["role"] == "system":
                raise RuntimeError("System role not supported")
            return "|".join(f"{message['role']}:{message['content']}" for message in messages)

    text = _chat(GemmaLike(), [{"role": "system", "content": MODERATION_QUESTION},
                               {"role": "user", "content": "a red circle"}])
    assert text == f"user:{MODERATION_QUESTION}\n\nRequest: a red circle"


def test_the_model_llm_answers_each_prompt_once(monkeypatch):
    """A request is screened when it is given and again when its batch runs: one LLM call."""
    import pipeline.safety as safety

    asked = []
    monkeypatch.setattr(safety, "yes_probability", lambda model, tokenizer, text: asked.append(text) or 0.1)
    tokenizer = type("Tokenizer", (), {"chat_template": "{{ messages }}"})()
    gate = SafetyGate(SafetySettings(words=None, use_model_llm=True), llm=(object(), tokenizer))
    for prompt in ("a castle", "a castle", "a boat", "a castle"):
        gate.check_prompt(prompt)
    assert asked == ["a castle", "a boat"]
