# syntax=docker/dockerfile:1
#
# Strongroom server image.
#   docker build -t strongroom:0.1.0 .
#   docker run --read-only --tmpfs /tmp -v strongroom-data:/var/lib/strongroom -p 8000:8000 strongroom:0.1.0
# (with --read-only, mount a volume on /var/lib/strongroom: it holds the SQLite database and keys
# when no STRONGROOM_DATABASE_URL / STRONGROOM_KEYS_DIR point elsewhere)
#
# Two stages: the builder turns the source tree into a wheel and installs it with its pinned
# dependencies into a virtualenv; the final image receives only that virtualenv. Neither stage
# installs a compiler: every dependency must come as a binary wheel (--only-binary), so a
# missing wheel fails the build loudly instead of compiling something unreviewed.

# Both stages must use the same base image: the virtualenv's interpreter is a symlink to the
# base image's /usr/local/bin/python3.11. Pin by digest for reproducible builds.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/strongroom

# Only what the wheel needs (see .dockerignore): the local data dir, keys and tests stay out.
COPY pyproject.toml README.md ./
COPY server ./server

# Build the wheel, install it with its dependencies (binary wheels only), byte-compile now
# (the final root filesystem is read-only, so nothing could write .pyc later), drop pip from
# the runtime venv (the running service installs nothing), and smoke-test the entry point.
RUN /opt/strongroom/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/strongroom/bin/pip install --only-binary=:all: /wheels/strongroom-*.whl \
 && /opt/strongroom/bin/python -m compileall -q /opt/strongroom/lib \
 && /opt/strongroom/bin/pip uninstall -y pip \
 && /opt/strongroom/bin/strongroom --help > /dev/null


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="strongroom" \
      org.opencontainers.image.description="Strongroom CRM server" \
      org.opencontainers.image.licenses="Proprietary"

# A fixed numeric UID/GID (not root, above the usual system and login ranges) so Kubernetes'
# runAsNonRoot can verify it and the chart's runAsUser/fsGroup (10001) match the files here.
# /var/lib/strongroom is the only writable application path; /tmp is the other writable one
# (tmpfs / emptyDir at run time).
# pg_dump, pg_restore and psql for `strongroom backup` on PostgreSQL (the backup CronJob runs this image); the
# only package added to the base, no compiler. Debian's client is version 15: pg_dump refuses a newer server,
# so for PostgreSQL 16+ build with a newer client (PGDG's postgresql-client-NN) - docs/deployment.md.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 strongroom \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/strongroom --shell /usr/sbin/nologin strongroom \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/strongroom

COPY --from=builder /opt/strongroom /opt/strongroom

ENV PATH=/opt/strongroom/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STRONGROOM_DATA_DIR=/var/lib/strongroom \
    STRONGROOM_HOST=0.0.0.0 \
    STRONGROOM_PORT=8000

WORKDIR /var/lib/strongroom

USER 10001:10001
EXPOSE 8000

# No HEALTHCHECK: Kubernetes probes /health/live and /health/ready (see the Helm chart).
ENTRYPOINT ["strongroom"]
CMD ["serve"]
