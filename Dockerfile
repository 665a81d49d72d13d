# One image for the worker, the service and the demo traffic generator.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streamrec ./streamrec
COPY stream_app ./stream_app
COPY serving ./serving
RUN pip install --no-cache-dir .
ENTRYPOINT ["streamrec"]
CMD ["--help"]
