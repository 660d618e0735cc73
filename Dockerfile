# idhooks container image. No Docker engine runs in CI: tests/test_docs.py keeps the install command equal to
# the Makefile's INSTALL_ARGS and runs that install, so this file cannot drift from what is tested.
# The entrypoint listens on 0.0.0.0:8080 (the healthcheck asks there); mount the config at
# /etc/idhooks/config.yaml (docs/deployment.md).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /src
COPY pyproject.toml *.md ./
COPY engine ./engine
COPY actions ./actions
RUN python -m pip install --no-cache-dir '.[redis,postgres,nats]'

RUN useradd --system --uid 10001 --home-dir /var/lib/idhooks --create-home idhooks
WORKDIR /var/lib/idhooks
USER idhooks

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["idhooks", "serve", "--host", "0.0.0.0", "--port", "8080"]
CMD ["--config", "/etc/idhooks/config.yaml"]
