"""At temperature 0 the same prompt gives the same text through the OpenAI API, the Ollama API
and llama-cpp-python called directly."""

from __future__ import annotations

from pathlib import Path

import ollama
import openai
from llama_cpp import Llama

from inference.registry import Catalogue
from tests.conftest import MODEL, Server

MESSAGES = [{"role": "user", "content": "Write one sentence about the sea."}]
TOKENS = 40


def test_same_text_through_both_apis_and_llama_cpp(server: Server, model_path: Path) -> None:
    defaults = Catalogue.library().resolve(MODEL).parameters
    via_openai = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x").chat.completions.create(
        model=MODEL, messages=MESSAGES, temperature=0, max_tokens=TOKENS,  # type: ignore[arg-type]
    ).choices[0].message.content
    via_ollama = ollama.Client(host=server.url).chat(
        model=MODEL, messages=MESSAGES, options={"temperature": 0, "num_predict": TOKENS},
    ).message.content
    llm = Llama(model_path=str(model_path), n_ctx=defaults.num_ctx or 2048, verbose=False)
    direct = llm.create_chat_completion(
        messages=MESSAGES, temperature=0, max_tokens=TOKENS,  # type: ignore[arg-type]
        top_p=defaults.top_p, top_k=defaults.top_k, min_p=0.0,
        repeat_penalty=defaults.repeat_penalty,
    )["choices"][0]["message"]["content"]
    assert via_openai
    assert via_openai == via_ollama == direct
