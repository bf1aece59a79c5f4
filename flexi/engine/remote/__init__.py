"""Wire clients for remote engines (vLLM, Ollama, llama-server, another Flexi, OpenAI-compatible services).

They speak a backend's HTTP dialect and turn its answers into Flexi's engine events; which backend runs
a request, its concurrency limit and the retry are decided above, in `flexi/service/remote.py`."""
