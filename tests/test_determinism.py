"""At temperature 0 the same prompt gives the same text through the OpenAI API, the Ollama API
and llama-cpp-python called directly."""

from __future__ import annotations

from pathlib import Path

from llama_cpp import Llama

from inference.registry import Catalogue
from tests.conftest import MODEL, Server

MESSAGES = [{"role": "user", "content": "Write one sentence about the sea."}]
TOKENS = 40


def test_same_text_through_both_apis_and_llama_cpp(server: Server, model_path: Path) -> None:
    defaults = Catalogue.library().resolve(MODEL).parameters
    via_openai = server.openai().chat.completions.create(
        model=MODEL, messages=MESSAGES, temperature=0, max_tokens=TOKENS,  # type: ignore[arg-type]
    ).choices[0].message.content
    via_ollama = server.ollama().chat(
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


def test_reused_prompt_cache_keeps_answers_reproducible(
    start_server: type[Server], data_dir: Path, model_path: Path,
) -> None:
    """A worker that reuses the KV cache of a long shared prefix answers exactly as a fresh
    llama-cpp-python does."""
    server = start_server(data_dir, "--workers", "1")
    history = " ".join(f"Fact {i}: the harbour log lists ship number {i * 7} arriving on day "
                       f"{i % 30 + 1}." for i in range(60))  # well over one 512-token batch
    first = [{"role": "system", "content": history},
             {"role": "user", "content": "Which ship arrived first?"}]
    second = [{"role": "system", "content": history},
              {"role": "user", "content": "How many facts are listed?"}]
    client = server.ollama()
    options = {"temperature": 0, "num_predict": 24}
    cold = client.chat(model=MODEL, messages=second, options=options)
    client.chat(model=MODEL, messages=first, options=options)
    warm = client.chat(model=MODEL, messages=second, options=options)  # reuses the prefix
    assert cold.prompt_eval_count is not None
    assert cold.prompt_eval_count > 600
    assert warm.message.content == cold.message.content
    assert warm.prompt_eval_duration is not None
    assert cold.prompt_eval_duration is not None
    assert warm.prompt_eval_duration < cold.prompt_eval_duration
    defaults = Catalogue.library().resolve(MODEL).parameters
    llm = Llama(model_path=str(model_path), n_ctx=defaults.num_ctx or 2048, verbose=False)
    direct = llm.create_chat_completion(
        messages=second, temperature=0, max_tokens=24,  # type: ignore[arg-type]
        top_p=defaults.top_p, top_k=defaults.top_k, min_p=0.0,
        repeat_penalty=defaults.repeat_penalty,
    )["choices"][0]["message"]["content"]
    assert warm.message.content == direct
