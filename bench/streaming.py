"""Streaming benchmark: Vagt against llama-cpp-python in-process and llama_cpp.server.

The same model, prompt and sampling parameters for all three subjects; runs are interleaved
round-robin so that drift in machine load hits every subject alike. Prints a markdown table and
writes the raw numbers to bench/results/streaming.json.

    python bench/streaming.py --data-dir .cache/test-data --runs 10
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from llama_cpp import Llama

from inference.registry import Catalogue

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "streaming.json"
MODEL = "smollm2:135m"
MESSAGES = [{"role": "user", "content": "Write a short paragraph about the sea."}]
N_CTX = 2048
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
WARMUPS = 2
TARGET_RATIO = 0.95
TARGET_ADDED_TTFT_MS = 5.0
MiB = 1024 * 1024
BUSY = 0.05  # other processes' share of the CPU above which results are unreliable


# --- measurement ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    ttft_ms: float
    tokens_per_s: float
    chunks: int


def sampling(max_tokens: int) -> dict[str, Any]:
    return {"temperature": 0.0, "max_tokens": max_tokens, "repeat_penalty": 1.1, "top_p": 0.9,
            "top_k": 40, "min_p": 0.0}


def timed(start: float, pieces: Iterable[str]) -> Run:
    """Times each non-empty piece as it arrives; ``pieces`` must be lazy."""
    stamps = [time.perf_counter() for piece in pieces if piece]
    if not stamps:
        raise RuntimeError("the stream carried no content")
    decode = stamps[-1] - stamps[0]
    rate = (len(stamps) - 1) / decode if decode > 0 else float("nan")
    return Run(ttft_ms=(stamps[0] - start) * 1000, tokens_per_s=rate, chunks=len(stamps))


def sse_content(lines: Iterable[str]) -> Iterator[str]:
    """The delta content of each chat-completion chunk in an SSE stream."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        choices = json.loads(data).get("choices") or []
        if choices:
            yield choices[0].get("delta", {}).get("content") or ""


def in_process(llm: Llama, max_tokens: int) -> Run:
    llm.reset()  # the gateway's worker evaluates every prompt from scratch; so does the baseline
    start = time.perf_counter()
    stream = llm.create_chat_completion(messages=MESSAGES, stream=True, **sampling(max_tokens))
    return timed(start, (chunk["choices"][0]["delta"].get("content") or "" for chunk in stream))


def over_http(client: httpx.Client, url: str, model: str, max_tokens: int,
              headers: dict[str, str] | None = None) -> Run:
    body = {"model": model, "messages": MESSAGES, "stream": True, **sampling(max_tokens)}
    start = time.perf_counter()
    with client.stream("POST", f"{url}/v1/chat/completions", json=body,
                       headers=headers) as response:
        response.raise_for_status()
        return timed(start, sse_content(response.iter_lines()))


def gateway_overhead_ms(client: httpx.Client, vagt: Vagt, max_tokens: int) -> float:
    """Client TTFT minus the worker's own prompt_eval_duration, for one Ollama /api/chat stream.

    Paired within one request, so unlike a difference of medians it is immune to the prompt
    evaluation's run-to-run noise: it is what the gateway (HTTP, auth, pipes, SSE) adds.
    """
    options = {**sampling(max_tokens), "num_predict": max_tokens}
    body = {"model": MODEL, "messages": MESSAGES, "stream": True, "options": options}
    start, first, prompt_eval_ms = time.perf_counter(), 0.0, 0.0
    with client.stream("POST", f"{vagt.url}/api/chat", json=body,
                       headers=vagt.headers) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            event = json.loads(line)
            if not first and event.get("message", {}).get("content"):
                first = (time.perf_counter() - start) * 1000
            if event.get("done"):
                prompt_eval_ms = event["prompt_eval_duration"] / 1e6
    return first - prompt_eval_ms


# --- subprocesses --------------------------------------------------------------------------------

def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def drain(stream: Iterable[str] | None) -> None:
    if stream is not None:
        threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()


@dataclass(frozen=True)
class Vagt:
    url: str
    headers: dict[str, str]
    process: subprocess.Popen[str]


@contextmanager
def vagt_serve(data_dir: Path) -> Iterator[Vagt]:
    """`vagt serve` on a fresh data dir whose catalogue serves the model of ``data_dir``.

    A fresh key store makes the gateway create an admin API key and print it in its banner.
    """
    with tempfile.TemporaryDirectory(prefix="vagt-bench-") as tmp:
        spec = Catalogue.load(data_dir / "models.yaml").resolve(MODEL)
        spec = spec.model_copy(update={"file": str(model_path(data_dir))})
        Catalogue().with_model(spec).save(Path(tmp) / "models.yaml")
        command = [sys.executable, "-m", "gateway.cli", "serve", "--port", "0",
                   "--data-dir", tmp, "--policy", str(ROOT / "policies/default.yaml"),
                   "--workers", "1", "--threads", str(THREADS), "--log-level", "warning"]
        log = Path(tmp) / "serve.log"
        with log.open("w") as stderr:
            process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr,
                                       text=True)
        try:
            url, headers = read_banner(process, log)
            yield Vagt(url, headers, process)
        finally:
            stop(process)


def read_banner(process: subprocess.Popen[str], log: Path) -> tuple[str, dict[str, str]]:
    """The URL and, when the banner shows one, the admin key as request headers."""
    assert process.stdout is not None
    url, headers = "", {}
    for line in process.stdout:
        if match := re.search(r"listening on (http://\S+)", line):
            url = match.group(1)
        if match := re.search(r"API key .*: (\S+)", line):
            headers = {"Authorization": f"Bearer {match.group(1)}"}
        if url and "curl " in line:
            drain(process.stdout)
            return url, headers
    process.wait(timeout=10)
    raise RuntimeError(f"vagt serve exited:\n{log.read_text()[-2000:]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def llama_cpp_server(model_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path),
               "--n_ctx", str(N_CTX), "--n_threads", str(THREADS),
               "--n_threads_batch", str(THREADS), "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield url, process
    finally:
        stop(process)


def wait_ready(url: str, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("llama_cpp.server exited; is llama-cpp-python[server] installed?")
        try:
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError("llama_cpp.server did not become ready")


# --- memory --------------------------------------------------------------------------------------

def memory(pid: int) -> dict[str, float]:
    info = psutil.Process(pid).memory_full_info()
    return {"rss_mib": info.rss / MiB, "uss_mib": info.uss / MiB}


def vagt_memory(process: subprocess.Popen[str]) -> dict[str, Any]:
    children = psutil.Process(process.pid).children(recursive=True)
    workers = [c.pid for c in children if "inference.worker" in " ".join(c.cmdline())]
    return {"gateway": memory(process.pid), "workers": [memory(pid) for pid in workers]}


# --- summary -------------------------------------------------------------------------------------

def p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def summarise(runs: list[Run]) -> dict[str, float]:
    ttft = [r.ttft_ms for r in runs]
    return {
        "ttft_ms_median": statistics.median(ttft), "ttft_ms_p90": p90(ttft),
        "tokens_per_s_median": statistics.median(r.tokens_per_s for r in runs),
        "chunks_median": statistics.median(r.chunks for r in runs),
        # Least disturbed by other load on the machine: the best run of each subject.
        "ttft_ms_min": min(ttft), "tokens_per_s_max": max(r.tokens_per_s for r in runs),
    }


def comparisons(summary: dict[str, dict[str, float]]) -> dict[str, float]:
    rate = {name: s["tokens_per_s_median"] for name, s in summary.items()}
    ttft = {name: s["ttft_ms_median"] for name, s in summary.items()}
    return {
        "vagt_over_in_process_tokens_per_s": rate["vagt"] / rate["in-process"],
        "vagt_added_ttft_ms": ttft["vagt"] - ttft["in-process"],
        "server_over_in_process_tokens_per_s": rate["llama_cpp.server"] / rate["in-process"],
        "vagt_over_server_tokens_per_s": rate["vagt"] / rate["llama_cpp.server"],
        "server_added_ttft_ms": ttft["llama_cpp.server"] - ttft["in-process"],
    }


def table(report: dict[str, Any]) -> str:
    summary, mem, ratios = report["summary"], report["memory"], report["comparisons"]
    rows = ["| subject | TTFT median (ms) | TTFT p90 (ms) | decode tok/s (median) "
            "| best run: TTFT ms, tok/s | chunks | RSS / USS (MiB) |",
            "|---|---:|---:|---:|---:|---:|---|"]
    for name, s in summary.items():
        rows.append(f"| {name} | {s['ttft_ms_median']:.1f} | {s['ttft_ms_p90']:.1f} "
                    f"| {s['tokens_per_s_median']:.1f} "
                    f"| {s['ttft_ms_min']:.0f}, {s['tokens_per_s_max']:.1f} "
                    f"| {s['chunks_median']:.0f} | {memory_cell(name, mem)} |")
    ok = "meets" if ratios["vagt_over_in_process_tokens_per_s"] >= TARGET_RATIO else "misses"
    added_ok = "meets" if ratios["vagt_added_ttft_ms"] <= TARGET_ADDED_TTFT_MS else "misses"
    rows += [
        "",
        f"- vagt ÷ in-process tokens/s: {ratios['vagt_over_in_process_tokens_per_s']:.1%} "
        f"(target ≥ {TARGET_RATIO:.0%}: {ok})",
        f"- vagt added TTFT (median): {ratios['vagt_added_ttft_ms']:+.1f} ms "
        f"(target ≤ {TARGET_ADDED_TTFT_MS:.0f} ms: {added_ok})",
        f"- llama_cpp.server ÷ in-process tokens/s: "
        f"{ratios['server_over_in_process_tokens_per_s']:.1%}; added TTFT "
        f"{ratios['server_added_ttft_ms']:+.1f} ms",
        f"- vagt ÷ llama_cpp.server tokens/s: {ratios['vagt_over_server_tokens_per_s']:.1%}",
        "- vagt overhead on TTFT, paired (client TTFT minus worker prompt eval, back-to-back "
        "Ollama /api/chat streams): median "
        f"{statistics.median(report['vagt_overhead_ms_back_to_back']):.1f} ms",
        "- GET /v1/models round trip (median ms): "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in report["round_trip_ms"].items()),
        f"- CPU used by other processes during the runs: "
        f"{report['other_processes_cpu_share']:.0%} of the machine"
        + (" (too busy: these numbers are not reliable)"
           if report["other_processes_cpu_share"] > BUSY else ""),
    ]
    return "\n".join(rows)


def memory_cell(name: str, mem: dict[str, Any]) -> str:
    if name == "in-process":
        return f"+{mem['in-process']['rss_delta_mib']:.0f} RSS delta"
    if name == "llama_cpp.server":
        m = mem["llama_cpp.server"]
        return f"{m['rss_mib']:.0f} / {m['uss_mib']:.0f}"
    gateway = mem["vagt"]["gateway"]
    workers = ", ".join(f"{w['rss_mib']:.0f} / {w['uss_mib']:.0f}" for w in mem["vagt"]["workers"])
    return f"gateway {gateway['rss_mib']:.0f} / {gateway['uss_mib']:.0f}; worker {workers}"


# --- main ----------------------------------------------------------------------------------------

def model_path(data_dir: Path) -> Path:
    catalogue = Catalogue.load(data_dir / "models.yaml")
    return catalogue.resolve(MODEL).path(data_dir / "models").resolve()


def interleave(subjects: dict[str, Callable[[], Run]], runs: int) -> dict[str, list[Run]]:
    for _ in range(WARMUPS):
        for measure in subjects.values():
            measure()
    results: dict[str, list[Run]] = {name: [] for name in subjects}
    for i in range(runs):
        for name, measure in subjects.items():
            results[name].append(measure())
        print(f"run {i + 1}/{runs} done", file=sys.stderr, flush=True)
    return results


def round_trip_ms(client: httpx.Client, url: str, headers: dict[str, str] | None = None) -> float:
    """Median time of GET /v1/models on the kept-alive connection: HTTP overhead alone."""
    times = []
    for _ in range(20):
        start = time.perf_counter()
        client.get(f"{url}/v1/models", headers=headers).raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def cpu_s(process: psutil.Process | None = None) -> float:
    """CPU seconds used so far by the whole machine, or by ``process`` and its children."""
    if process is None:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + t.irq + t.softirq
    procs = [process, *process.children(recursive=True)]
    return sum(sum(proc.cpu_times()[:2]) for proc in procs)


def benchmark(data_dir: Path, runs: int, max_tokens: int) -> dict[str, Any]:
    path = model_path(data_dir)
    own = psutil.Process()
    rss_before = own.memory_info().rss
    llm = Llama(model_path=str(path), n_ctx=N_CTX, n_threads=THREADS, n_threads_batch=THREADS,
                verbose=False)
    with ExitStack() as stack:
        vagt = stack.enter_context(vagt_serve(data_dir))
        server_url, server = stack.enter_context(llama_cpp_server(path))
        client = stack.enter_context(httpx.Client(timeout=120))
        subjects: dict[str, Callable[[], Run]] = {
            "in-process": lambda: in_process(llm, max_tokens),
            "vagt": lambda: over_http(client, vagt.url, MODEL, max_tokens, vagt.headers),
            "llama_cpp.server": lambda: over_http(client, server_url, str(path), max_tokens),
        }
        machine_before, ours_before, wall_before = cpu_s(), cpu_s(own), time.monotonic()
        results = interleave(subjects, runs)
        wall = time.monotonic() - wall_before
        other_cpu = (cpu_s() - machine_before) - (cpu_s(own) - ours_before)
        extra = {
            "vagt_overhead_ms_back_to_back": [gateway_overhead_ms(client, vagt, max_tokens)
                                              for _ in range(runs)],
            "round_trip_ms": {"vagt": round_trip_ms(client, vagt.url, vagt.headers),
                              "llama_cpp.server": round_trip_ms(client, server_url)},
            "other_processes_cpu_share": max(0.0, other_cpu) / (wall * (psutil.cpu_count() or 1)),
            "memory": {
                "in-process": {"rss_delta_mib": (own.memory_info().rss - rss_before) / MiB},
                "vagt": vagt_memory(vagt.process),
                "llama_cpp.server": memory(server.pid),
            },
        }
    summary = {name: summarise(r) for name, r in results.items()}
    return {
        "model": MODEL, "model_path": str(path), "runs": runs, "max_tokens": max_tokens,
        "threads": THREADS, "n_ctx": N_CTX, "sampling": sampling(max_tokens),
        "summary": summary, "comparisons": comparisons(summary), **extra,
        "raw": {name: [asdict(r) for r in rs] for name, rs in results.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(".cache/test-data"))
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop the servers
    report = benchmark(args.data_dir.resolve(), args.runs, args.max_tokens)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))


if __name__ == "__main__":
    main()
