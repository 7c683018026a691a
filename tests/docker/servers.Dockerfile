# Test-only: the servers docker-compose.yml pulls from Docker Hub (redis, influxdb, prometheus),
# installed from Debian's packages into the local bookworm base, where no image can be pulled.
# One image for all of them; compose.test.yml picks the program per service.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       redis-server influxdb prometheus wget \
    && rm -rf /var/lib/apt/lists/*
# Like the official redis image: protected mode off (the compose network is the boundary).
COPY redis-server.sh /usr/local/bin/redis-server
COPY influxdb.conf /etc/influxdb/compose-test.conf
