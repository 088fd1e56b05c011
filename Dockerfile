FROM python:3.13-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml setup.cfg README.md ./
COPY messenger ./messenger
COPY actors ./actors
COPY handlers ./handlers
COPY config ./config
COPY scripts ./scripts
RUN pip install --no-cache-dir .
USER nobody
EXPOSE 8000
CMD ["python", "-m", "messenger", "--host", "0.0.0.0", "--port", "8000"]
