"""The prompt writers: the encoder's own weights as a causal LM, the HTTP endpoint, cleaning,
caching and the embedded model's unknown-word notice."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from helpers.endpoints import chat_server
from helpers.servers import free_port
from pipeline.commands import main
from pipeline.enhance import (EndpointEnhancer, EnhanceFailed, LanguageModelEnhancer, PromptEnhancer, build_enhancer,
                              causal_lm_view, clean, unknown_words, unknown_words_notice)
from pipeline.local_tokenizers import gemma_tokenizer, qwen_tokenizer
from pipeline.request import GenerationRequest

KEY = "sk-test-0123456789abcdef"


def _gemma2_encoder():
    from transformers import Gemma2Config, Gemma2Model

    config = Gemma2Config(vocab_size=512, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=8, attn_implementation="eager")
    torch.manual_seed(0)
    return Gemma2Model(config).eval()


def _qwen3_encoder(tied: bool = True):
    from transformers import Qwen3Config, Qwen3Model

    config = Qwen3Config(vocab_size=512, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=512,
                         tie_word_embeddings=tied)
    torch.manual_seed(0)
    return Qwen3Model(config).eval()


ENCODERS = {"gemma2": (_gemma2_encoder, gemma_tokenizer), "qwen3": (_qwen3_encoder, qwen_tokenizer)}


def _storage(module) -> set[int]:
    return {tensor.untyped_storage().data_ptr() for tensor in itertools.chain(module.parameters(), module.buffers())}


@pytest.fixture(params=sorted(ENCODERS))
def writer(request):
    build_encoder, build_tokenizer = ENCODERS[request.param]
    encoder = build_encoder()
    return encoder, LanguageModelEnhancer(causal_lm_view(encoder), build_tokenizer(), name="tiny", max_new_tokens=6)


def _prompt_ids(enhancer):
    inputs = enhancer.tokenizer("a red circle", return_tensors="pt")
    return inputs["input_ids"], inputs["attention_mask"]


def test_the_causal_lm_view_adds_no_weight(writer):
    encoder, enhancer = writer
    view = enhancer.model
    assert view.model is encoder
    assert view.lm_head.weight.data_ptr() == encoder.embed_tokens.weight.data_ptr()
    assert _storage(view) == _storage(encoder)
    assert not any(tensor.is_meta for tensor in view.parameters())


def test_a_seed_gives_the_same_tokens_and_greedy_needs_none(writer):
    _, enhancer = writer
    ids, mask = _prompt_ids(enhancer)
    first, again, other = (enhancer.generate(ids, mask, seed) for seed in (7, 7, 8))
    assert first == again
    assert first != other
    assert enhancer.generate(ids, mask, None) == enhancer.generate(ids, mask, None)
    assert len(first) == enhancer.max_new_tokens  # random weights never say end-of-turn here: the bound stops it


def test_the_time_bound_stops_generation(writer):
    _, enhancer = writer
    enhancer.max_new_tokens, enhancer.max_seconds = 100, 3
    ticks = itertools.count()
    enhancer.clock = lambda: float(next(ticks))  # one second per look at the clock
    ids, mask = _prompt_ids(enhancer)
    with pytest.raises(EnhanceFailed) as failed:
        enhancer.generate(ids, mask, 1)
    assert str(failed.value) == "The prompt writer tiny took longer than 3 s."
    assert next(ticks) == 5  # the start, then one look per token: the fourth token is over the bound


def test_should_stop_cancels(writer):
    _, enhancer = writer
    enhancer.max_new_tokens = 100
    calls = itertools.count(1)
    with pytest.raises(EnhanceFailed, match=r"^Prompt enhancement was cancelled\.$"):
        enhancer.enhance("a red circle", should_stop=lambda: next(calls) >= 3)
    assert next(calls) == 4


def test_an_untied_encoder_cannot_write():
    with pytest.raises(ValueError, match="^the text encoder Qwen3Model has no output layer of its own weights; "
                                         "choose a separate prompt writer$"):
        causal_lm_view(_qwen3_encoder(tied=False))


def test_an_encoder_that_generates_is_used_as_it_is():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    model = Qwen3ForCausalLM(Qwen3Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, head_dim=8))
    assert causal_lm_view(model) is model


def test_the_qwen_image_encoder_generates_as_it_is():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "vocab_size": 512, "rope_theta": 1000000.0,
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16, vocab_size=512, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    enhancer = LanguageModelEnhancer(causal_lm_view(encoder), qwen_tokenizer(), name="tiny", max_new_tokens=6)
    assert enhancer.model is encoder
    ids, mask = _prompt_ids(enhancer)
    first = enhancer.generate(ids, mask, 3)
    assert first == enhancer.generate(ids, mask, 3) and len(first) == 6


def test_enhancing_leaves_the_pictures_as_they_were(sana):
    request = GenerationRequest(prompt="a red circle", seed=3, steps=2, width=32, height=32)
    before = np.asarray(sana.generate(request).images[0])
    enhancer = LanguageModelEnhancer.from_pipeline(sana.pipe, "sana text encoder", max_new_tokens=8)
    assert enhancer.model.model is sana.pipe.text_encoder
    ids, mask = _prompt_ids(enhancer)
    assert len(enhancer.generate(ids, mask, 5)) > 0
    sana.clear_cache()
    after = np.asarray(sana.generate(request).images[0])
    assert type(sana.pipe.text_encoder).__name__ == "Gemma2Model"
    np.testing.assert_array_equal(before, after)


class Counting(PromptEnhancer):
    name = "counting"

    def __init__(self, reply: str = "a small red circle", cache_size: int = 2):
        super().__init__(cache_size=cache_size)
        self.reply, self.calls = reply, []

    def _rewrite(self, prompt, task, seed, should_stop):
        self.calls.append((prompt, task, seed))
        return self.reply


def test_the_same_prompt_and_seed_are_rewritten_once():
    enhancer = Counting()
    first = enhancer.enhance("a red circle", seed=1)
    assert enhancer.enhance("a red circle", seed=1) is first
    enhancer.enhance("a red circle", seed=2)
    enhancer.enhance("a red circle", task="edit", seed=2)  # evicts seed 1 (two kept)
    enhancer.enhance("a red circle", seed=1)
    assert enhancer.calls == [("a red circle", "text", 1), ("a red circle", "text", 2),
                              ("a red circle", "edit", 2), ("a red circle", "text", 1)]
    assert first.settings == {"task": "text", "seed": 1} and first.enhancer == "counting"


def test_output_is_cleaned_and_capped():
    assert clean('<think>plan it</think>\n  "A red circle,\n at the top."  ') == "A red circle, at the top."
    assert clean("Enhanced prompt: a blue square") == "a blue square"
    assert clean("<think>never closed") == ""
    long = " ".join(["word"] * 100 + ["end."] + ["more"] * 100)
    assert clean(long) == " ".join(["word"] * 100 + ["end."])


@pytest.mark.parametrize("reply, message", [
    ("<think>only thoughts</think>", "The prompt writer counting returned no text."),
    ("a red\x00circle", "The prompt writer counting returned text that is not a valid prompt (prompt contains the "
                        "control character U+0000 at position 5; only printable text, tabs and line breaks are "
                        "allowed)."),
])
def test_unusable_output_is_one_sentence(reply, message):
    with pytest.raises(EnhanceFailed) as failed:
        Counting(reply).enhance("a red circle")
    assert str(failed.value) == message


def test_the_endpoint_rewrites_and_sends_the_key_only_in_its_header(monkeypatch):
    monkeypatch.setenv("ENHANCER_API_KEY", KEY)
    with chat_server("ok", reply='"A small red circle at the top, blue background."') as server:
        enhancer = EndpointEnhancer(server.url, "tiny-chat")
        result = enhancer.enhance("a red circle", seed=4)
    assert result.text == "A small red circle at the top, blue background."
    headers, body = server.requests[0]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert body["model"] == "tiny-chat" and body["seed"] == 4 and body["messages"][1]["content"] == "a red circle"
    assert body["messages"][0]["role"] == "system"
    assert KEY not in repr(result) and KEY not in enhancer.name


def test_endpoint_failures_are_one_sentence_without_the_key(monkeypatch):
    monkeypatch.setenv("ENHANCER_API_KEY", KEY)
    messages = []
    for mode in ("slow", "malformed", "error"):
        with chat_server(mode, delay_s=2.0) as server:
            enhancer = EndpointEnhancer(server.url, "tiny-chat", timeout=0.5)
            with pytest.raises(EnhanceFailed) as failed:
                enhancer.enhance("a red circle")
            messages.append((str(failed.value), server.url))
    down = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EnhanceFailed) as failed:
        EndpointEnhancer(down, "tiny-chat").enhance("a red circle")
    messages.append((str(failed.value), down))
    expected = ["The prompt writer at {}/chat/completions did not answer within 0.5 s.",
                "The prompt writer at {}/chat/completions sent a reply that is not a chat completion.",
                "The prompt writer at {}/chat/completions answered with HTTP 500.",
                "The prompt writer at {}/chat/completions cannot be reached (ConnectionRefusedError)."]
    assert [message for message, _ in messages] == [text.format(url) for text, (_, url) in zip(expected, messages)]
    assert all(KEY not in message for message, _ in messages)


def test_endpoint_settings_hold_no_secret(monkeypatch):
    monkeypatch.setenv("ENHANCER_API_KEY", KEY)
    enhancer = EndpointEnhancer(f"http://user:{KEY}@127.0.0.1:9/v1", "tiny-chat")
    assert enhancer.settings() == {"endpoint": "http://127.0.0.1:9/v1/chat/completions", "model": "tiny-chat",
                                   "max_tokens": 300, "temperature": 0.7}
    assert KEY not in enhancer.name


def test_build_enhancer_refuses_what_it_cannot_build(tmp_path):
    with pytest.raises(ValueError, match="^name the endpoint's model after '#' in the URL"):
        build_enhancer("http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match=f"^cannot load the prompt writer '{tmp_path}': "):
        build_enhancer(str(tmp_path))
    assert isinstance(build_enhancer("http://127.0.0.1:9/v1#tiny-chat"), EndpointEnhancer)


def test_enhance_command_prints_one_line(capsys):
    with chat_server("ok", reply="a small red circle\n at the top, blue background") as server:
        code = main(["enhance", "--prompt", "a red circle", "--enhancer", f"{server.url}#tiny-chat", "--seed", "2"])
    out, err = capsys.readouterr()
    assert (code, out, err) == (0, "a small red circle at the top, blue background\n", "")


def test_enhance_command_failure_is_one_error_line(capsys):
    url = f"http://127.0.0.1:{free_port()}/v1"
    code = main(["enhance", "--prompt", "a red circle", "--enhancer", f"{url}#tiny-chat"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err == f"error: The prompt writer at {url}/chat/completions cannot be reached (ConnectionRefusedError).\n"


def test_unknown_words_are_named_with_what_the_model_knows():
    prompt = "a big purple dragon breathing fire over a castle"
    assert unknown_words(prompt) == ["dragon", "breathing", "fire", "over", "castle"]
    assert unknown_words_notice(prompt) == (
        'The embedded model does not know "dragon", "breathing", "fire", "over", "castle": it draws one circle, '
        "square or triangle in red, orange, yellow, green, blue, purple, white, black on a background of one of "
        "those colours, small, little, large, big, at the left, right, top, bottom or center, as in "
        '"a little red circle on the top, blue background".')
    assert unknown_words_notice("A small red circle at the top, blue background") is None


def test_the_default_writer_is_the_encoder_or_the_embedded_writer(sana):
    from types import SimpleNamespace

    from pipeline.enhance import default_enhancer

    own = default_enhancer(sana)
    assert own.model.model is sana.pipe.text_encoder and own.tokenizer is sana.pipe.tokenizer
    embedded = SimpleNamespace(source=SimpleNamespace(preset=SimpleNamespace(name="embedded")))
    writer = default_enhancer(embedded)
    assert (writer.name, type(writer.model).__name__) == ("embedded writer", "Qwen3ForCausalLM")
    assert writer.enhance("a red circle", seed=0).text.startswith("a ")
