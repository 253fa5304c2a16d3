# Make It Move images; `docker compose` (compose.yaml) builds the first two. See README "Running at scale".
#   engine  `makeitmove serve` and `makeitmove worker`: CUDA runtime, CUDA torch, the model stack, Postgres
#   bot     `makeitmove bot telegram|discord`: slim, no torch
#   cpu     the CPU engine and CLI (no torch, no model downloads), on a mounted folder:
#             docker build --target cpu -t makeitmove . && docker run --rm -v "$PWD:/work" makeitmove animate /work/meme.jpg -o /work/meme.gif

# --- the sources, on a slim Python (bot, cpu) ------------------------------------------------------
# libgl1 and libglib2.0-0: mediapipe brings opencv-contrib-python, whose cv2 links them (see pyproject.toml)
FROM python:3.11-slim AS slim
RUN apt-get update && apt-get install -y --no-install-recommends gifsicle libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md config.toml ./
COPY engine ./engine
COPY storage ./storage
COPY bot ./bot

FROM slim AS cpu
RUN pip install --no-cache-dir .
WORKDIR /work
ENTRYPOINT ["makeitmove"]

FROM slim AS bot
RUN pip install --no-cache-dir '.[telegram,discord]'
ENTRYPOINT ["makeitmove"]
CMD ["bot", "telegram", "--config", "/etc/makeitmove/config.toml"]

# --- the engine: API replicas and GPU workers ---------------------------------------------------------
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu24.04 AS engine
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PATH=/opt/venv/bin:$PATH
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv gifsicle libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
# torch first, from PyTorch's CUDA 12.4 index, so the gpu extra finds it installed instead of pulling a CPU build.
RUN pip install torch --index-url https://download.pytorch.org/whl/cu124
WORKDIR /app
COPY pyproject.toml README.md config.toml ./
COPY engine ./engine
COPY storage ./storage
COPY bot ./bot
RUN pip install '.[gpu,postgres]'
ENTRYPOINT ["makeitmove"]
CMD ["serve", "--config", "/etc/makeitmove/config.toml"]
