# The MLflow tracking server of deploy/compose/compose.yaml: `mlflow server` with a sqlite store and served
# artifacts, both in the volume /mlflow. Exactly the locked `mlflow-server` group (requirements/mlflow-server.txt:
# mlflow with its `auth` extra).
#
#   docker build -f deploy/docker/mlflow.Dockerfile -t tweet-sentiment-mlflow .   # from the repository root
#   docker run --rm -p 127.0.0.1:5000:5000 -v tweet-sentiment-mlflow:/mlflow \
#     -e MLFLOW_AUTH_ADMIN_PASSWORD -e MLFLOW_FLASK_SERVER_SECRET_KEY tweet-sentiment-mlflow   # both from your shell
#
# MLflow refuses Host headers it does not know (DNS rebinding): MLFLOW_ALLOWED_HOSTS lists the names clients use.
# Air-gapped like the other images: with a wheelhouse/ in the context, pip installs with --no-index.
#
# MLflow's own authentication (`--app-name basic-auth`, the `auth` extra): every route but /health and the static
# files asks for a user and password (401 without). Two secrets, never in the image, and the server refuses to
# start without either: MLFLOW_AUTH_ADMIN_PASSWORD (12 characters or more; creates the user `admin` the first time
# the auth store starts, and is ignored once it exists) and MLFLOW_FLASK_SERVER_SECRET_KEY (CSRF of the sign-up
# form). The auth store (users, permissions) sits beside the runs in the volume: /mlflow/basic_auth.db. Every
# authenticated user may read (default_permission READ); only the admin, or whoever created a model or an
# experiment, may change it. Clients send MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD. A password is checked
# against its scrypt hash once a minute, not on every request (auth_cache_ttl_seconds = 60; seeding the runs makes
# hundreds of requests). With one worker, a password changed through the API takes effect at once.

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
COPY requirements/mlflow-server.txt wheelhous[e] /tmp/wheels/
RUN set -eu; \
    export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
           PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore; \
    if ls /tmp/wheels/*.whl >/dev/null 2>&1; then src="--no-index --find-links /tmp/wheels"; else src=""; fi; \
    python3 -m venv /opt/venv; \
    pip="/opt/venv/bin/python -m pip"; \
    $pip install $src --no-deps --no-compile --require-virtualenv -r /tmp/wheels/mlflow-server.txt; \
    $pip check; \
    rm -rf /tmp/wheels

FROM ${BASE_IMAGE}
RUN set -eu; \
    if command -v useradd >/dev/null 2>&1; then \
        groupadd --gid 10001 app; \
        useradd --uid 10001 --gid 10001 --home-dir /home/app --shell /usr/sbin/nologin --no-log-init app; \
    else \
        echo 'app:x:10001:10001:tweet-sentiment:/home/app:/usr/sbin/nologin' >> /etc/passwd; \
        echo 'app:x:10001:' >> /etc/group; \
    fi; \
    install -d -o 10001 -g 10001 /home/app /mlflow; \
    printf '%s\n' '[mlflow]' 'default_permission = READ' 'database_uri = sqlite:////mlflow/basic_auth.db' \
        'admin_username = admin' 'authorization_function = mlflow.server.auth:authenticate_request_basic_auth' \
        'auth_cache_ttl_seconds = 60' > /etc/mlflow-auth.ini
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/app \
    GIT_PYTHON_REFRESH=quiet \
    MLFLOW_PORT=5000 \
    MLFLOW_AUTH_CONFIG_PATH=/etc/mlflow-auth.ini \
    MLFLOW_ALLOWED_HOSTS="mlflow:5000,localhost:*,127.0.0.1:*"
VOLUME ["/mlflow"]
WORKDIR /home/app
USER 10001:10001
EXPOSE 5000
# Creating the tables of a new store takes a while on a busy machine: a long start period.
HEALTHCHECK --interval=5s --timeout=3s --start-period=180s --retries=3 \
    CMD python -c "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/health' % os.environ.get('MLFLOW_PORT', '5000'), timeout=2)"
CMD ["sh", "-c", "exec mlflow server --backend-store-uri sqlite:////mlflow/mlflow.db --artifacts-destination /mlflow/artifacts --host 0.0.0.0 --port \"$MLFLOW_PORT\" --workers 1 --allowed-hosts \"$MLFLOW_ALLOWED_HOSTS\" --app-name basic-auth"]

ARG VERSION=0.1.0 VCS_REF=unknown SOURCE="" CREATED=""
LABEL org.opencontainers.image.title="tweet-sentiment-mlflow" \
      org.opencontainers.image.description="MLflow tracking server for the tweet sentiment runs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT"
