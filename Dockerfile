# The CPU engine and CLI (no torch, no model downloads). The GPU and bot images come with the
# scale-out work; this one runs `makeitmove animate` on a mounted folder:
#   docker build -t makeitmove . && docker run --rm -v "$PWD:/work" makeitmove animate /work/meme.jpg -o /work/meme.gif
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends gifsicle \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md config.toml ./
COPY engine ./engine
RUN pip install --no-cache-dir .
WORKDIR /work
ENTRYPOINT ["makeitmove"]
