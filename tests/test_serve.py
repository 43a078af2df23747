"""`eden-mlx serve`: mlx-lm's OpenAI-compatible server started on loopback for a model + adapter,
talked to with the real `openai` client, streaming and not; its greedy answer equals MLX's
greedy generation of the same prompt; torch and QLoRA adapters are refused in one line."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest

from .conftest import EDEN, ROOT, run_cli

openai = pytest.importorskip("openai", reason="needs the dev extra (openai)")

MESSAGES = [{"role": "user", "content": "Write a haiku about the sea."}]
TOKENS = 12


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def serve_log(tmp_path_factory):
    return tmp_path_factory.mktemp("serve") / "serve.log"  # a file: a pipe nobody reads fills up


@pytest.fixture(scope="module")
def server(tiny_qwen2, lora_qwen2, serve_log):
    port = free_port()
    proc = subprocess.Popen([*EDEN, "serve", "--model", tiny_qwen2, "--adapter", lora_qwen2,
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=serve_log.open("w"))
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none",
                           max_retries=0, timeout=60)
    deadline = time.monotonic() + 90
    while True:
        try:
            client.models.list()
            break
        except openai.APIConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise AssertionError(f"serve did not start:\n{serve_log.read_text()}") from None
            time.sleep(0.3)
    yield client
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def greedy_answer(tiny_qwen2, lora_qwen2) -> str:
    """What MLX's greedy generation answers, rendered by our own template path."""
    from mlx_eden.backends.mlx.inference import greedy, load
    from mlx_eden.data.prompting import conversation_ids, stop_ids
    from mlx_eden.data.render import load_tokenizer

    tok = load_tokenizer(tiny_qwen2)
    model, _ = load(tiny_qwen2, lora_qwen2)
    ids = greedy(model, [conversation_ids(tok, MESSAGES, {})], TOKENS)[0]
    stop = stop_ids(tok)
    cut = next((i for i, t in enumerate(ids) if t in stop), len(ids))
    return tok.decode(ids[:cut], skip_special_tokens=True)


def test_models_lists_the_served_model(server):
    ids = [m.id for m in server.models.list().data]
    assert ids == ["tiny-qwen2"], ids  # the --model folder's name


def test_chat_completion_equals_greedy_generate(server, greedy_answer):
    model = server.models.list().data[0].id  # the listed id serves base + adapter
    reply = server.chat.completions.create(model=model, messages=MESSAGES, max_tokens=TOKENS,
                                           temperature=0)
    assert greedy_answer.strip(), "the adapter should say something (random lora_b)"
    assert reply.choices[0].message.content == greedy_answer


def test_streaming_chat_completion_equals_greedy_generate(server, greedy_answer):
    model = server.models.list().data[0].id
    stream = server.chat.completions.create(model=model, messages=MESSAGES, max_tokens=TOKENS,
                                            temperature=0, stream=True)
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([p for p in pieces if p]) > 1  # streamed, not one block
    assert "".join(pieces) == greedy_answer


def test_a_client_leaving_a_stream_costs_one_line_not_a_traceback(server, serve_log):
    """curl | head closes the socket mid-stream: the server says so in one line (mlx-lm's
    handler raised BrokenPipeError into socketserver, which printed a 30-line traceback)."""
    port = server.base_url.port
    body = json.dumps({"model": "tiny-qwen2", "messages": MESSAGES, "max_tokens": 400,
                       "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                  + body)
        assert s.recv(64).startswith(b"HTTP/1")  # the stream began; now leave
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # reset
    deadline = time.monotonic() + 60
    while "closed the connection" not in serve_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    text = serve_log.read_text()
    assert "closed the connection before the reply ended" in text, text[-2000:]
    assert "Traceback" not in text, text[-2000:]


def test_serve_refuses_torch_and_a_missing_adapter(tiny_qwen2, tmp_path):
    proc = run_cli("serve", "--model", tiny_qwen2, "--backend", "torch")
    assert proc.returncode == 2 and "vllm serve" in proc.stderr and "llama-server" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli("serve", "--model", tiny_qwen2, "--adapter", tmp_path)
    assert proc.returncode == 2 and "adapters.safetensors" in proc.stderr, proc.stderr


def test_serve_refuses_an_adapter_trained_on_a_base_quantized_at_load(tiny_qwen2, lora_qwen2,
                                                                       tmp_path):
    import shutil

    qlora = shutil.copytree(lora_qwen2, tmp_path / "qlora")
    config = json.loads((qlora / "adapter_config.json").read_text())
    config.setdefault("eden", {})["quantize"] = {"bits": 4, "group_size": 64, "dtype": "float32"}
    (qlora / "adapter_config.json").write_text(json.dumps(config))
    proc = run_cli("serve", "--model", tiny_qwen2, "--adapter", qlora)
    assert proc.returncode == 2 and "--requantize 4" in proc.stderr, proc.stderr
