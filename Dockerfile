# lossd as a container. Targets:
#   cpu (the default: the last stage is the CPU image)   docker build -t lossd .
#   gpu (CUDA runtime base, onnxruntime-gpu)            docker build --target gpu -t lossd:gpu .
# BuildKit (the default builder since Docker 23) builds only the stages a target needs.
# The legacy builder builds every stage before its target, so there `--target cpu` keeps
# it from pulling the CUDA base for a CPU image.
# BASE must provide python3 (3.11+) with the venv module at the same path in both stages.
ARG BASE=python:3.12-slim
ARG GPU_BASE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------- CPU
FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The dependencies first, in a layer that only pyproject.toml invalidates: editing the
# sources then rebuilds a few megabytes, not the whole venv.
COPY pyproject.toml ./
RUN python3 -m venv /opt/lossd \
    && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
       > requirements.txt \
    && /opt/lossd/bin/pip install -r requirements.txt
COPY README.md ./
COPY kernels kernels
COPY service service
# A non-editable install: the app lives in the venv's site-packages, so the runtime
# stage needs the venv and nothing else from this one.
RUN /opt/lossd/bin/pip install --no-deps .

FROM ${BASE} AS cpu
# Monitors keep their SQLite file in LOSSD_DATA_DIR: a directory the server's user owns
# (mount a volume there to keep it across containers).
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin lossd \
    && install -d -o 10001 -g 10001 /var/lib/lossd
COPY --from=build /opt/lossd /opt/lossd
# MALLOC_MMAP_THRESHOLD_ is already what `lossd serve` wants, so it starts without
# re-executing itself; the server is PID 1 and handles SIGTERM from `docker stop`.
# onnxruntime (1.29+) sends usage telemetry from Linux unless ORT_DISABLE_TELEMETRY is set;
# a service image has no business phoning home (and no home to keep a device ID in).
ENV PATH=/opt/lossd/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_MMAP_THRESHOLD_=33554432 \
    ORT_DISABLE_TELEMETRY=1 \
    LOSSD_HOST=0.0.0.0 \
    LOSSD_PORT=8000 \
    LOSSD_DATA_DIR=/var/lib/lossd
# Numeric, so that runtimes enforcing runAsNonRoot can verify it.
USER 10001
WORKDIR /var/lib/lossd
EXPOSE 8000
# No curl in slim bases: python's urllib, on whatever LOSSD_PORT the server uses. The
# start period covers start-up, which builds and checks ~400 ONNX graphs (20-60 s).
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('LOSSD_PORT', '8000'), timeout=4)"]
CMD ["lossd", "serve"]

# ---------------------------------------------------------------- GPU
# Not built by the test suite (no registry and no GPU there). Run with `--gpus all`;
# GET /health lists CUDAExecutionProvider when the GPU is in use.
FROM ${GPU_BASE} AS gpu-build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The `gpu` extra's onnxruntime-gpu in place of onnxruntime: both write the same
# `onnxruntime` module, and pip would install both for `.[gpu]` (the base requirements
# name onnxruntime), so the requirements are listed here without it.
COPY pyproject.toml ./
RUN python3 -m venv /opt/lossd \
    && python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join([d for d in p['dependencies'] if not d.startswith('onnxruntime')] + p['optional-dependencies']['gpu']))" \
       > requirements.txt \
    && /opt/lossd/bin/pip install -r requirements.txt
COPY README.md ./
COPY kernels kernels
COPY service service
RUN /opt/lossd/bin/pip install --no-deps .

FROM ${GPU_BASE} AS gpu
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin lossd \
    && install -d -o 10001 -g 10001 /var/lib/lossd
COPY --from=gpu-build /opt/lossd /opt/lossd
ENV PATH=/opt/lossd/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_MMAP_THRESHOLD_=33554432 \
    ORT_DISABLE_TELEMETRY=1 \
    LOSSD_HOST=0.0.0.0 \
    LOSSD_PORT=8000 \
    LOSSD_DATA_DIR=/var/lib/lossd
USER 10001
WORKDIR /var/lib/lossd
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('LOSSD_PORT', '8000'), timeout=4)"]
CMD ["lossd", "serve"]

# ---------------------------------------------------------------- default
# Last, so a plain `docker build .` gives the CPU image.
FROM cpu
