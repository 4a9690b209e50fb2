# audioq: one image for every role (web, worker pools, beat, flower).
# The role is chosen by the command; the default runs the API.
# docker-compose.yml tags it audioq:<project version>; docs/operations.md.
# Base pinned to a full version (bump deliberately, with the constraints).
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ffmpeg decodes compressed uploads; libsndfile backs the soundfile package.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg libsndfile1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Only the project sources (never a local .venv, .data or .git).
COPY pyproject.toml constraints.txt ./
COPY shared ./shared
COPY web ./web
COPY workers ./workers
COPY ops ./ops
# /docs links to the getting-started guide; web/api/docs.py serves it from here.
COPY docs/getting-started.md ./docs/getting-started.md
RUN pip install -c constraints.txt . \
 && rm -rf build *.egg-info

# Pretrained models, baked into the image (basic-pitch's note model is
# copied out of its wheel; the separation model is converted from its checkpoint).
ENV AUDIOQ_MODEL_DIR=/opt/audioq/models
RUN audioq models fetch

# Unprivileged runtime user; celery beat keeps its schedule file in /var/lib/audioq.
RUN useradd --system --create-home --home-dir /home/audioq --uid 10001 audioq \
 && mkdir -p /var/lib/audioq \
 && chown audioq:audioq /var/lib/audioq
USER audioq

EXPOSE 8000

# gevent workers (ops/gunicorn_conf.py): a request waiting on a job must not
# pin a whole worker.
CMD ["gunicorn", "-c", "python:ops.gunicorn_conf", "--bind", "0.0.0.0:8000", "--workers", "2", "web:create_app()"]
