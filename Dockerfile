# One image for the API and the worker. TORCH_INDEX picks the PyTorch build: CUDA wheels by
# default (GPU workers), https://download.pytorch.org/whl/cpu for a CPU-only image.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TUNESERVE_DATA_DIR=/data \
    HF_HOME=/data/hf-cache

WORKDIR /srv/tuneserve
RUN pip install --index-url "$TORCH_INDEX" "torch>=2.3,<3"
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
RUN pip install .

RUN useradd --create-home --uid 1000 tuneserve && mkdir -p /data && chown tuneserve /data
USER tuneserve
EXPOSE 8000
CMD ["tuneserve", "api", "--host", "0.0.0.0", "--port", "8000"]
