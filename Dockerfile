# lossd's CPU image: docker build -t lossd .
# One target and no other stage to skip, so Docker's legacy builder and BuildKit build the
# same thing (the legacy builder builds every stage of a file, whatever the target). The
# GPU image has a Dockerfile of its own: docker build -f Dockerfile.gpu -t lossd:gpu .
# BASE must provide python3 (3.11+) with the venv module at the same path in both stages.
ARG BASE=python:3.12-slim

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
# Every graph built now, into the venv: a container serves from them at once (graphs are
# otherwise built on first use) and never writes them (its root filesystem may be read-only).
RUN LOSSD_GRAPH_CACHE=/opt/lossd/graphs /opt/lossd/bin/lossd prebuild

FROM ${BASE} AS cpu
# Monitors keep their SQLite file in LOSSD_DATA_DIR: a directory the server's user owns
# (mount a volume there to keep it across containers).
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin lossd \
    && install -d -o 10001 -g 10001 /var/lib/lossd
COPY --from=build /opt/lossd /opt/lossd
# The allocator thresholds are already what `lossd serve` wants, so it starts without
# re-executing itself; the server is PID 1 and handles SIGTERM from `docker stop`.
# onnxruntime (1.29+) sends usage telemetry from Linux unless ORT_DISABLE_TELEMETRY is set;
# a service image has no business phoning home (and no home to keep a device ID in).
# A read-only root filesystem works (`docker run --read-only --tmpfs /tmp -v DATA:/var/lib/lossd`,
# Kubernetes' readOnlyRootFilesystem): the server writes only to LOSSD_DATA_DIR and /tmp
# (prometheus_client's per-worker files, under a fresh directory of /tmp); no bytecode
# is written, and HOME and MPLCONFIGDIR (matplotlib, where an image adds the `plot`
# extra) point into /tmp rather than at a home directory that does not exist.
ENV PATH=/opt/lossd/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_MMAP_THRESHOLD_=33554432 \
    MALLOC_TRIM_THRESHOLD_=33554432 \
    ORT_DISABLE_TELEMETRY=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    LOSSD_HOST=0.0.0.0 \
    LOSSD_PORT=8000 \
    LOSSD_GRPC_PORT=8001 \
    LOSSD_DATA_DIR=/var/lib/lossd \
    LOSSD_GRAPH_CACHE=/opt/lossd/graphs
# Numeric, so that runtimes enforcing runAsNonRoot can verify it.
USER 10001
WORKDIR /var/lib/lossd
# HTTP, and the Open Inference Protocol over gRPC (HTTP/2 without TLS).
EXPOSE 8000 8001
# No curl in slim bases: python's urllib, on whatever LOSSD_PORT the server uses. Start-up
# takes a few seconds (imports; the graphs are prebuilt above).
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('LOSSD_PORT', '8000'), timeout=4)"]
CMD ["lossd", "serve"]
