# The service image: the package and its dependencies on a slim Python base.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY dispatcher ./dispatcher
COPY admin_api ./admin_api
COPY migrations ./migrations
RUN pip install --no-cache-dir .

# Listen on all interfaces inside the container; publish the port to choose who
# can reach it.
ENV VIZOCHOK_HOST=0.0.0.0 VIZOCHOK_PORT=8080
EXPOSE 8080
# The SQLite default writes vizochok.db and its key file to the working folder.
RUN mkdir /data && chown nobody /data
WORKDIR /data
USER nobody
CMD ["vizochok", "serve"]
