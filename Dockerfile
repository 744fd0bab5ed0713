# syntax=docker/dockerfile:1
# Warden's image: built with its data path compiled (deploy/build.sh, the script CI runs too),
# run as a non-root user. Build: docker build -t warden .
# Run: docker run -p 8000:8000 -v ./warden.yaml:/etc/warden/warden.yaml:ro warden
# (the config must listen on 0.0.0.0:8000, or set WARDEN_HEALTH_URL to where it listens).
ARG PYTHON_VERSION=3.11

# The builder has a C compiler (GCC) and Python's headers: mypyc compiles the data path here,
# guided by a profile of a workload the build runs (build_support/guided.py).
FROM python:${PYTHON_VERSION}-bookworm AS builder
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE MANIFEST.in ./
COPY build_support/ build_support/
COPY warden/ warden/
COPY deploy/build.sh deploy/build.sh
COPY deploy/compose/warden.yaml deploy/compose/warden.yaml
RUN deploy/build.sh /opt/warden

# The runtime has neither: only the virtualenv the builder made, at the same path (its
# scripts name it), on the same Python.
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 warden \
    && useradd --system --uid 10001 --gid warden --home-dir /var/lib/warden \
       --shell /usr/sbin/nologin warden \
    && mkdir -p /etc/warden /var/lib/warden/records \
    && chown -R warden:warden /var/lib/warden
COPY --from=builder /opt/warden /opt/warden
ENV PATH=/opt/warden/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    WARDEN_HEALTH_URL=http://127.0.0.1:8000/health
# The recorder's files (recorder.dir, relative to this directory) belong here: mount a volume.
WORKDIR /var/lib/warden
USER 10001:10001
EXPOSE 8000
# SIGTERM drains: requests in flight get timeouts.shutdown_grace (30 s) to finish, so give
# `docker stop` longer (-t 45; compose's stop_grace_period).
STOPSIGNAL SIGTERM
# /health answers 200 while the process serves; the image has Python, not curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['WARDEN_HEALTH_URL'], timeout=2)"]
ENTRYPOINT ["warden"]
CMD ["serve", "-c", "/etc/warden/warden.yaml"]
