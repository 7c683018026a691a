# Test-only: the HA simulator (devtools/simulator) as Home Assistant in compose.test.yml. Built
# on the product image (its venv has websockets), with devtools/ added: the product image
# itself never holds it. The build context is a temporary copy made by tests/docker/images.py.
ARG PRODUCT_IMAGE=ha-ingestor:latest
FROM ${PRODUCT_IMAGE}
COPY --chown=10001:10001 devtools /opt/simulator/devtools
COPY --chown=10001:10001 sim_entry.py /opt/simulator/sim_entry.py
ENV PYTHONPATH=/opt/simulator
EXPOSE 8123
CMD ["python", "/opt/simulator/sim_entry.py"]
