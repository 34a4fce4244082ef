# JupyterLab for the docker backend; built by docker-compose.yml (context: the repository root).
# docker-compose.yml passes BASE_IMAGE from lab_env/config.py; the default here must match it.
ARG BASE_IMAGE=mambaorg/micromamba:2.3.3
FROM ${BASE_IMAGE}

# The repository is bind-mounted at the work directory: give the notebook user the host user's
# ids so saved notebooks stay writable on Linux hosts. Override with
# `docker compose build --build-arg LAB_UID=$(id -u) --build-arg LAB_GID=$(id -g) jupyter`.
ARG LAB_UID=1000
ARG LAB_GID=1000
USER root
RUN groupmod -g "${LAB_GID}" "${MAMBA_USER}" \
    && usermod -u "${LAB_UID}" -g "${LAB_GID}" "${MAMBA_USER}" \
    && chown -R "${MAMBA_USER}:${MAMBA_USER}" "${MAMBA_ROOT_PREFIX}" "/home/${MAMBA_USER}"
USER ${MAMBA_USER}

# The same pinned dependencies as pyproject.toml (tests/unit/test_dependencies.py checks that).
COPY --chown=${MAMBA_USER}:${MAMBA_USER} environment.yml /tmp/environment.yml
RUN micromamba install --yes --name base --file /tmp/environment.yml \
    && micromamba clean --all --yes

# Installed in editable mode at the path the repository is mounted on, so the live `lab_env`
# from the host is the one imported.
ARG MAMBA_DOCKERFILE_ACTIVATE=1
RUN mkdir -p /home/${MAMBA_USER}/work
WORKDIR /home/mambauser/work
COPY --chown=${MAMBA_USER}:${MAMBA_USER} pyproject.toml README.md ./
COPY --chown=${MAMBA_USER}:${MAMBA_USER} lab_env ./lab_env
RUN pip install --no-cache-dir --no-deps -e .

EXPOSE 8888
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser"]
