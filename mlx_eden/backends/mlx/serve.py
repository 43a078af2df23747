"""`eden-mlx serve` on MLX: mlx-lm's own OpenAI-compatible server (/v1/chat/completions with
streaming, /v1/completions, /v1/models), started with the base and the adapter folder (a run's
adapter folder is an mlx-lm adapter as written). Nothing here answers a request itself."""

from __future__ import annotations

import json
import sys
from http.server import ThreadingHTTPServer
from pathlib import Path


def serve(name: str, model_dir: Path, adapter: Path | None, host: str, port: int,
          template_args: dict, max_tokens: int) -> None:
    """Run mlx-lm's server until interrupted (blocks); /v1/models lists `name`."""
    from mlx_lm import server

    class Handler(server.APIHandler):
        def handle_models_request(self):
            # mlx-lm's own lists the Hugging Face cache (raising CacheNotFound when there is
            # none) and the model folder under an id that maps to the base without the
            # adapter; list the one model served, under an id that maps to base + adapter.
            self._set_completion_headers(200)
            self.end_headers()
            self.wfile.write(json.dumps({"object": "list", "data": [
                {"id": name, "object": "model", "created": self.created,
                 "owned_by": "mlx-eden"}]}).encode())

    argv = ["--model", str(model_dir), "--host", host, "--port", str(port),
            "--chat-template-args", json.dumps(template_args), "--max-tokens", str(max_tokens)]
    if adapter is not None:
        argv += ["--adapter-path", str(adapter)]
    class Server(ThreadingHTTPServer):  # mlx-lm's default server_class
        def handle_error(self, request, client_address):
            # A client that stops reading a stream (curl | head, a closed browser tab) made
            # socketserver print a 30-line BrokenPipeError traceback per request: one line.
            if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                print(f"serve: {client_address[0]} closed the connection before the reply "
                      "ended", file=sys.stderr, flush=True)
                return
            super().handle_error(request, client_address)

    start = server.run

    def run(host, port, provider, **kw):
        # mlx-lm maps only the model id "default_model" to --model/--adapter-path (another id
        # is loaded as a path, without the adapter): map the listed name the same way.
        provider._model_map[name] = str(model_dir)
        provider._adapter_map[name] = str(adapter) if adapter is not None else None
        # server.run without its distributed branch (one process here): its own drops
        # handler_class on the way to _run_http_server.
        generator = server.ResponseGenerator(
            provider, server.LRUPromptCache(provider.cli_args.prompt_cache_size))
        server._run_http_server(host, port, generator, server_class=Server,
                                handler_class=Handler)

    # mlx-lm builds its options (and their defaults) inside main(); reuse them rather than
    # copy the list: main() reads sys.argv and calls server.run.
    server.run, sys.argv = run, ["mlx_lm.server", *argv]
    try:
        server.main()
    finally:
        server.run = start
