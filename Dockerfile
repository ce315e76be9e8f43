# The image docker-compose.yml runs: the package and its console script.
FROM python:3.11-slim
WORKDIR /srv/mentorflow
COPY pyproject.toml README.md ./
COPY domain domain
COPY workflows workflows
COPY projections projections
COPY service service
RUN pip install --no-cache-dir . && useradd --system mentorflow \
    && mkdir -p /srv/mentorflow-data && chown mentorflow /srv/mentorflow-data
USER mentorflow
EXPOSE 8080
CMD ["mentorflow", "serve", "--host", "0.0.0.0", "--port", "8080"]
