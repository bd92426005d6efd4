"""An OpenAI-compatible chat-completions endpoint as the prompt writer (Ollama, vLLM, llama.cpp).

The API key is read from the environment variable `API_KEY_ENV` at each request and sent only
in the Authorization header: it is never part of the name, the settings, a log line or an error.
"""
from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request

from pipeline.enhance.base import EnhanceFailed, PromptEnhancer
from pipeline.enhance.instructions import SYSTEM_PROMPTS

API_KEY_ENV = "ENHANCER_API_KEY"
TIMEOUT_S = 30.0
MAX_TOKENS = 300
TEMPERATURE = 0.7
MAX_REPLY_BYTES = 1 << 20


def _public_url(url: str) -> str:
    """`url` without any user:password part, fit to show."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class EndpointEnhancer(PromptEnhancer):
    """Rewrites prompts through `base_url`/chat/completions with the model `model`."""

    def __init__(self, base_url: str, model: str, *, timeout: float = TIMEOUT_S, max_tokens: int = MAX_TOKENS,
                 temperature: float = TEMPERATURE, api_key_env: str = API_KEY_ENV, cache_size: int | None = None):
        super().__init__(**({} if cache_size is None else {"cache_size": cache_size}))
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the prompt writer's URL must start with http:// or https://, got {_public_url(base_url)!r}")
        if not model.strip():
            raise ValueError("the prompt writer's endpoint needs a model name")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.shown_url = _public_url(self.url)
        self.model, self.timeout, self.max_tokens = model, timeout, max_tokens
        self.temperature, self.api_key_env = temperature, api_key_env
        self.name = f"{model} at {_public_url(base_url.rstrip('/'))}"

    def settings(self) -> dict:
        return {"endpoint": _public_url(self.url), "model": self.model, "max_tokens": self.max_tokens,
                "temperature": self.temperature}

    def _rewrite(self, prompt: str, task: str, seed: int | None, should_stop) -> str:
        body = {"model": self.model, "max_tokens": self.max_tokens, "stream": False,
                "temperature": 0.0 if seed is None else self.temperature,
                "messages": [{"role": "system", "content": SYSTEM_PROMPTS[task]}, {"role": "user", "content": prompt}]}
        if seed is not None:
            body["seed"] = seed
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        if should_stop is not None and should_stop():
            raise EnhanceFailed("Prompt enhancement was cancelled.")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read(MAX_REPLY_BYTES)
        except urllib.error.HTTPError as error:
            raise EnhanceFailed(f"The prompt writer at {self.shown_url} answered with HTTP {error.code}.") from None
        except (TimeoutError, socket.timeout):
            raise EnhanceFailed(f"The prompt writer at {self.shown_url} did not answer within {self.timeout:g} s.") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise EnhanceFailed(f"The prompt writer at {self.shown_url} did not answer within "
                                    f"{self.timeout:g} s.") from None
            raise EnhanceFailed(f"The prompt writer at {self.shown_url} cannot be reached "
                                f"({type(reason).__name__}).") from None
        try:
            text = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            text = None
        if not isinstance(text, str):
            raise EnhanceFailed(f"The prompt writer at {self.shown_url} sent a reply that is not a chat completion.")
        return text
