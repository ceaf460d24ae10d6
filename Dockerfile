# canaryd controller image.
#   docker build -t ghcr.io/canaryd/canaryd:0.1.0 .
# Two stages: wheels are built with the compilers and caches of the first stage; the second gets
# only the installed result and runs as an unprivileged user (uid 10001, as in manifests/).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY canaryd ./canaryd
COPY analysis ./analysis
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 canaryd \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin canaryd
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels canaryd && rm -rf /wheels
# Numeric user: the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["canaryd"]
CMD ["run"]
