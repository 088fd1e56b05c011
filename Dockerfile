# The messenger image: one `web` process per container (docker-compose.yml runs several behind
# nginx). Runs as the unprivileged user `messenger`; /data (MESSENGER_DATA_DIR: the embedded
# SQLite file when MONGO_URL is unset, local attachments, the log-mode outbox) is a volume it
# owns. Settings come from the environment (.env.example).
FROM python:3.13-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 PORT=8000 MESSENGER_DATA_DIR=/data
RUN groupadd --system --gid 10001 messenger \
    && useradd --system --uid 10001 --gid messenger --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin messenger \
    && mkdir -p /data && chown messenger:messenger /data
COPY pyproject.toml setup.cfg README.md .env.example ./
COPY messenger ./messenger
COPY actors ./actors
COPY handlers ./handlers
COPY config ./config
COPY scripts ./scripts
RUN pip install --no-cache-dir .
USER messenger
# Declared after the chown: a new named volume starts with /data's owner, so it is writable.
VOLUME ["/data"]
EXPOSE 8000
# Ready = the database answers (and, with REDIS_URL, Redis): /api/readyz is 200.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=5 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/api/readyz' % os.environ.get('PORT', '8000'), timeout=2).status == 200 else 1)"]
# exec form: the server is PID 1 and gets SIGTERM itself (it drains, then exits 0).
CMD ["python", "-m", "messenger"]
