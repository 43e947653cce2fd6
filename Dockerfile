# syntax=docker/dockerfile:1
# The relucvx solver service (`relucvx serve`).
#
#   GPU (default): SCS built from its sdist with the cuDSS direct solver, on a CUDA base.
#     docker build -t relucvx-solver .
#     docker run --gpus all -p 8000:8000 relucvx-solver
#   CPU only: the SCS wheel from PyPI on plain Ubuntu.
#     docker build --build-arg VARIANT=cpu -t relucvx-solver:cpu .
#
# The application is installed from a wheel built here with the same commands that
# tests/service/test_docker.py runs outside Docker: `pip wheel --no-deps --no-build-isolation`,
# then `pip install` of that wheel with the `service` extra, then the entry point below.

ARG VARIANT=gpu
ARG CUDA_VERSION=12.8.1
ARG UBUNTU=ubuntu24.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build-base-gpu
FROM ubuntu:24.04 AS build-base-cpu
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU} AS runtime-base-gpu
FROM ubuntu:24.04 AS runtime-base-cpu

# ------------------------------------------------------------------------------ build
# (the base is one of the stages above, chosen by VARIANT)
# hadolint ignore=DL3006
FROM build-base-${VARIANT} AS build
ARG VARIANT
ARG SCS_VERSION=3.3.1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# cudss (NVIDIA's apt repository, configured in the CUDA images) only for the GPU image
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev build-essential pkg-config libopenblas-dev \
    && if [ "${VARIANT}" = "gpu" ]; then apt-get install -y --no-install-recommends cudss; fi \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir "pip>=24" "setuptools>=68" "wheel>=0.42"

# SCS: from the sdist with cuDSS (GPU), or the PyPI wheel (CPU)
RUN if [ "${VARIANT}" = "gpu" ]; then \
        export CPATH=/usr/include/libcudss/12 \
               LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/libcudss/12:/usr/local/cuda/lib64 ; \
        pip wheel --no-cache-dir --no-deps --no-binary scs --wheel-dir /wheels \
            "scs>=${SCS_VERSION}" \
            -Csetup-args=-Dlink_cudss=true -Csetup-args=-Dint32=true ; \
    else \
        pip wheel --no-cache-dir --no-deps --only-binary scs --wheel-dir /wheels \
            "scs>=${SCS_VERSION}" ; \
    fi

# the application wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY lightning_relucvx ./lightning_relucvx
COPY service ./service
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

# ------------------------------------------------------------------------------ runtime
# hadolint ignore=DL3006
FROM runtime-base-${VARIANT} AS runtime
ARG VARIANT
ARG TORCH_VERSION=2.13.0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv libopenblas0 libgomp1 \
    && if [ "${VARIANT}" = "gpu" ]; then \
        apt-get install -y --no-install-recommends libcudss0-cuda-12; fi \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
# torch: the CUDA build in the GPU image (the firstorder solver runs on the GPU), the CPU
# build otherwise (a plain requirement would pull the multi-GB CUDA build into it). The
# application and SCS come from the wheels built above; their dependencies are resolved
# from the index.
# hadolint ignore=DL3013
RUN if [ "${VARIANT}" = "gpu" ]; then TORCH_INDEX=cu128; else TORCH_INDEX=cpu; fi \
    && pip install --no-cache-dir --index-url "https://download.pytorch.org/whl/${TORCH_INDEX}" \
        "torch==${TORCH_VERSION}" \
    && pip install --no-cache-dir /wheels/scs-*.whl \
    && pip install --no-cache-dir --find-links /wheels "lightning-relucvx[service]" \
    && rm -rf /wheels

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin relucvx
USER 10001
WORKDIR /home/relucvx

ENV RELUCVX_HOST=0.0.0.0 \
    RELUCVX_PORT=8000 \
    RELUCVX_WORKERS=2
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "service.healthcheck"]
ENTRYPOINT ["relucvx", "serve"]
CMD []
