# wardwatch worker / simulator image (the trainer uses the same image with the [trainer] extra)
FROM python:3.11-slim
ARG EXTRAS=""
RUN useradd --system --uid 10001 --create-home wardwatch
WORKDIR /app
COPY pyproject.toml README.md ./
COPY wardwatch ./wardwatch
COPY cli ./cli
COPY simulator ./simulator
COPY agents ./agents
COPY models ./models
COPY alerts ./alerts
COPY trainer ./trainer
COPY benchmarks ./benchmarks
RUN pip install --no-cache-dir ".${EXTRAS}"
# the shipped model; a named volume mounted here starts as a copy of it (compose: `models`)
COPY --chown=10001:10001 model-registry ./model-registry
USER wardwatch
# bound beyond loopback, a worker refuses to start without real secrets and a TLS
# certificate (WARDWATCH_WEB_TLS_CERT/KEY) or WARDWATCH_ALLOW_INSECURE_HTTP=true
ENV WARDWATCH_WEB_HOST=0.0.0.0 WARDWATCH_DATA_DIR=/tmp/wardwatch \
    WARDWATCH_MODEL_REGISTRY=/app/model-registry
EXPOSE 6066
ENTRYPOINT ["wardwatch"]
CMD ["worker"]
