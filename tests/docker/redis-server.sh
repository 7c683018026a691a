#!/bin/sh
# As the official redis image's redis-server: reachable from the other containers.
exec /usr/bin/redis-server "$@" --protected-mode no
