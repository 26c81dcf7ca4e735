# wardwatch worker / simulator image (the trainer uses the same image with the [trainer] extra)
FROM python:3.11-slim
ARG EXTRAS=""
WORKDIR /app
COPY pyproject.toml README.md ./
COPY wardwatch ./wardwatch
COPY agents ./agents
COPY models ./models
COPY alerts ./alerts
COPY trainer ./trainer
RUN pip install --no-cache-dir ".${EXTRAS}"
RUN useradd --system --uid 10001 wardwatch
USER wardwatch
ENV WARDWATCH_WEB_HOST=0.0.0.0 WARDWATCH_DATA_DIR=/tmp/wardwatch
EXPOSE 6066
ENTRYPOINT ["wardwatch"]
CMD ["worker"]
