# The reference client image: Debian bookworm python3 (a local mmdebstrap base) + torch + this project.
#
# Built offline by scripts/build-client-image (docs/client-image.md): the context holds only wheel
# directories, which RUN bind-mounts (BuildKit), so no wheel is left in a layer and the build runs with
# --network=none. Needs Debian's /usr/bin/docker 20.10 with DOCKER_BUILDKIT=1 (spec/ci-docker.md, pitfall 1).
# No `# syntax=` line and no FROM of a remote image: BuildKit would resolve it on Docker Hub (pitfall 8).
#
# Context layout (the script prepares it):
#   torch/  torch (CPU by default; a CUDA wheel for GPU hosts) and numpy, with their dependencies
#   app/    the project's wheel, its runtime and `client`-extra dependencies, and requirements.txt
#           (psyche-run-manager[client] plus any --extra-requirement)
ARG BASE=psyche-client-base:bookworm-py311
FROM ${BASE}

# PEP 668: Debian's python3 is "externally managed"; this image is the only user of it (pitfall 5).
ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INDEX=1 \
    PIP_ROOT_USER_ACTION=ignore

# torch first, in its own layer (~940 MB on CPU): it changes far less often than the project, and the
# mount source is only torch/, so a new project wheel does not invalidate this layer's cache.
RUN --mount=type=bind,source=torch,target=/wheels/torch \
    pip install --find-links /wheels/torch torch numpy \
    && python3 -c "import torch, numpy"

RUN --mount=type=bind,source=torch,target=/wheels/torch \
    --mount=type=bind,source=app,target=/wheels/app \
    pip install --find-links /wheels/app --find-links /wheels/torch -r /wheels/app/requirements.txt \
    && python3 -c "import psyche.chain, psyche.client"

# The client contract (spec/client-contract.md 3.1). Set after the installs so that they do not leak
# into pip's environment and so that changing them does not rebuild the torch layer.
ENV NVIDIA_DRIVER_CAPABILITIES=all \
    PYTHONUNBUFFERED=1 \
    TORCHINDUCTOR_CACHE_DIR=/tmp/torchinductor \
    LOGNAME=root

# Last, so a new version or content hash only adds metadata on top of cached layers.
ARG VERSION=0.0.0
ARG CONTENT_HASH=unknown
ARG TORCH_VARIANT=cpu
LABEL org.opencontainers.image.title="psyche-client" \
      org.opencontainers.image.description="Psyche reference training client (python3 -m psyche.client)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      psyche.client.version="${VERSION}" \
      psyche.client.content-hash="${CONTENT_HASH}" \
      psyche.client.torch-variant="${TORCH_VARIANT}" \
      psyche.client.key-file="1"

WORKDIR /root
ENTRYPOINT ["python3", "-m", "psyche.client"]
