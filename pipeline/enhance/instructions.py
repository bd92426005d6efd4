"""The project's own instructions to a prompt writer, and the chat formats they are sent in."""
from __future__ import annotations

SYSTEM_PROMPTS = {
    "text": (
        "You write prompts for a text-to-image model. Rewrite the user's request as one description of the "
        "picture. Keep the subject and every attribute the user stated: colours, counts, sizes, positions, "
        "style. Put any text that should appear in the picture in double quotes. Add concrete composition, "
        "lighting, colours and style. Write one paragraph of under 120 words in the user's language. Reply "
        "with the description only: no title, no commentary."
    ),
    "edit": (
        "You write instructions for an image-editing model. Rewrite the user's request as one precise edit "
        "instruction: what to change, where, and what stays as it is. Keep the subject and every attribute the "
        "user stated. Put any text that should appear in the picture in double quotes. Write under 120 words. "
        "Reply with the instruction only: no title, no commentary."
    ),
}

# Used when a tokenizer carries no chat template of its own.
GEMMA_TEMPLATE = "<bos><start_of_turn>user\n{system}\n\n{user}<end_of_turn>\n<start_of_turn>model\n"
CHATML_TEMPLATE = ("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
                   "<|im_start|>assistant\n<think>\n\n</think>\n\n")
# Tokens that end a turn in the families' chat formats, besides the tokenizer's eos.
END_OF_TURN = ("<end_of_turn>", "<|im_end|>", "<|endoftext|>", "<eos>")


def chat_text(tokenizer, model_type: str, task: str, prompt: str) -> str:
    """The chat prompt that asks for a rewrite of `prompt`, in the tokenizer's own format.

    Qwen3 templates get `enable_thinking=False`; a template without a system role (Gemma's) gets
    the instructions at the top of the user turn.
    """
    system = SYSTEM_PROMPTS[task]
    if tokenizer.chat_template:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        try:
            return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                                 enable_thinking=False)
        except Exception:  # jinja raises for a template that refuses the system role
            merged = [{"role": "user", "content": f"{system}\n\n{prompt}"}]
            return tokenizer.apply_chat_template(merged, add_generation_prompt=True, tokenize=False,
                                                 enable_thinking=False)
    template = GEMMA_TEMPLATE if model_type.startswith("gemma") else CHATML_TEMPLATE
    return template.format(system=system, user=prompt)
