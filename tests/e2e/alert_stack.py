"""The alert tests' stack and its five ways to look at it.

A `Stack` is a simulator, listener, worker, beat (and Flower), their own broker Redis and
InfluxDB, and a real Prometheus scraping the listener and Flower every second and evaluating
deploy/prometheus/alerts.yml with every `for` set to 0 s. `agree(code)` waits for a health
reason in /health, then finds it with the same severity in /metrics, on the status page, in
`ha-ingestor status --json` and among the alerts Prometheus fires; what each showed goes to
agreement.jsonl beside the logs. Shared by tests/e2e/test_alerts.py and test_alerts_more.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devtools.local_servers import InfluxDBServer, RedisServer, free_port, terminate
from tests.helpers import wait_until
from tests.processes import BIN, AppProcess, app_env, beat_argv, listener_argv, worker_argv
from tests.sim_thread import SimulatorThread

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
TOKEN = "alerts-token-0123456789"
THRESHOLDS = {
    "BEAT_INTERVAL": "1",
    "HEALTH_EVENT_GAP": "3",
    "HEALTH_LISTENER_STALE": "6",
    "HEALTH_QUEUE_BACKLOG": "40",
    "HEALTH_QUEUE_MAX_AGE": "4",
    "HA_HEARTBEAT_INTERVAL": "1",
    "HA_HEARTBEAT_TIMEOUT": "2",
    "HA_RECONNECT_INITIAL_DELAY": "0.2",
    "HA_RECONNECT_MAX_DELAY": "1",
    "HEALTH_RECONNECTS_PER_HOUR": "2",
    "MAX_EVENT_AGE": "3",  # only while InfluxDB is unavailable: then to the outage store
    "DEAD_LETTERS_MAX": "100",
}


def rule_metric_names() -> set[str]:
    """Every metric the rules name (expressions and the queries of their descriptions)."""
    return set(re.findall(r"\b((?:ha_ingestor|flower)_[a-z0-9_]+)", RULES.read_text("utf-8")))


@dataclass
class Stack:
    tmp: Path
    sim: SimulatorThread
    broker: RedisServer
    influx: InfluxDBServer
    state_url: str
    database: str = "alerts"
    token_file: Path | None = None
    """HA_TOKEN_FILE instead of HA_TOKEN (a token that can be replaced, then SIGHUP)."""
    state: RedisServer | None = None
    """The state Redis at `state_url` when the stack owns it (so a test may stop it)."""
    settings: dict[str, str] = field(default_factory=dict)
    """More settings for every process started from now on, and for `status`."""
    health_port: int = field(default_factory=free_port)
    flower_port: int = field(default_factory=free_port)
    prometheus_port: int = field(default_factory=free_port)
    processes: dict[str, AppProcess] = field(default_factory=dict)
    prometheus: subprocess.Popen[bytes] | None = None

    def env(self, **extra: str) -> dict[str, str]:
        settings = {
            "HA_URL": self.sim.sim.url,
            **({"HA_TOKEN_FILE": str(self.token_file)} if self.token_file else {"HA_TOKEN": TOKEN}),
            "CELERY_BROKER_URL": self.broker.url,
            "REDIS_URL": self.state_url,
            "INFLUXDB_URL": self.influx.url,
            "INFLUXDB_DATABASE": self.database,
            "HEALTH_PORT": str(self.health_port),
            "FLOWER_PORT": str(self.flower_port),
            "DATA_DIR": str(self.tmp / "data"),
            **THRESHOLDS,
            **self.settings,
        }
        return app_env(**(settings | extra))

    def start(self, name: str, **extra: str) -> AppProcess:
        argv = {
            "listener": listener_argv(),
            "worker": worker_argv(),
            "beat": beat_argv(self.tmp / "beat-schedule"),
            "flower": [str(BIN / "ha-ingestor"), "flower"],
        }[name]
        process = AppProcess(name, argv, self.env(**extra), self.tmp).start()
        self.processes[name] = process
        return process

    def stop(self, name: str) -> None:
        self.processes[name].stop()

    def start_prometheus(self) -> None:
        """A real Prometheus with the repository's rules, every `for` set to 0 s."""
        if shutil.which("prometheus") is None:
            pytest.fail("prometheus is not installed: run `apt-get install prometheus`")
        rules = yaml.safe_load(RULES.read_text("utf-8"))
        for group in rules["groups"]:
            for rule in group["rules"]:
                rule["for"] = "0s"
        (self.tmp / "alerts.yml").write_text(yaml.safe_dump(rules), "utf-8")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {"job_name": "ha-ingestor-listener", "honor_labels": True,  # as deploy/'s
                 "static_configs": [{"targets": [f"127.0.0.1:{self.health_port}"]}]},
                {"job_name": "ha-ingestor-flower",
                 "static_configs": [{"targets": [f"127.0.0.1:{self.flower_port}"]}]},
            ],
        }  # fmt: skip
        (self.tmp / "prometheus.yml").write_text(yaml.safe_dump(config), "utf-8")
        log = (self.tmp / "prometheus.log").open("ab")
        self.prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={self.tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.prometheus_port}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        wait_until(lambda: get(self.prometheus_port, "/-/ready")[0] == 200, 30, 0.2, "Prometheus")

    # --- the five ways to look -------------------------------------------------------------

    def health(self) -> tuple[int, dict[str, Any]]:
        code, body = get(self.health_port, "/health")
        return code, json.loads(body) if body else {}

    def checks(self) -> dict[str, str]:
        """code → severity in /health."""
        code, health = self.health()
        if code == 0:
            return {"(no answer)": ""}
        return {c["code"]: c["severity"] for c in health["checks"]}

    def metric_checks(self) -> dict[str, str]:
        """code → severity in /metrics' ha_ingestor_health_check."""
        return {
            s.labels["code"]: s.labels["severity"]
            for family in text_string_to_metric_families(get(self.health_port, "/metrics")[1])
            for s in family.samples
            if s.name == "ha_ingestor_health_check" and s.value == 1
        }

    def page_checks(self) -> tuple[str, dict[str, str]]:
        """The status page's title status and the checks of the document it renders."""
        page = get(self.health_port, "/")[1]
        title = re.search(r"<title>ha-ingestor: (\w+)</title>", page)
        data = re.search(r'<script id="health-data" type="application/json">(.*?)</script>', page)
        assert title, page[:500]
        assert data, page[:500]
        document = json.loads(data.group(1))
        return title.group(1), {c["code"]: c["severity"] for c in document["checks"]}

    def status_run(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "ha-ingestor"), "status", "--json"], env=self.env(),
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip

    def status(self) -> tuple[int, dict[str, Any]]:
        done = self.status_run()
        return done.returncode, json.loads(done.stdout)

    def alerts(self) -> dict[str, dict[str, Any]]:
        """alertname → the alert Prometheus fires now (labels, annotations)."""
        body = json.loads(get(self.prometheus_port, "/api/v1/alerts")[1])
        return {
            a["labels"]["alertname"]: a for a in body["data"]["alerts"] if a["state"] == "firing"
        }

    def firing(self) -> dict[str, str]:
        """alertname → severity of the alerts Prometheus fires now."""
        return {name: a["labels"]["severity"] for name, a in self.alerts().items()}

    # --- agreement ---------------------------------------------------------------------------

    def agree(
        self, code: str, timeout: float = 20, *, severity: str = "", in_status: bool = True
    ) -> str:
        """Wait for `code` (with `severity`, if given) in /health, then find it everywhere.

        `in_status=False` for a reason about Redis itself: `status` reads Redis, so it cannot
        report that Redis is unreadable; its exit code is noted and the caller checks it.
        """
        wanted = (severity,) if severity else ("degraded", "unhealthy")
        wait_until(lambda: self.checks().get(code) in wanted, timeout, 0.2, f"{code} in /health")
        http_code, health = self.health()
        severity = next(c["severity"] for c in health["checks"] if c["code"] == code)
        assert http_code == (503 if health["status"] == "unhealthy" else 200)
        assert self.metric_checks().get(code) == severity, f"{code}: /metrics disagrees"
        title, page = self.page_checks()
        assert page.get(code) == severity, f"{code}: the status page disagrees"
        assert title in ("degraded", "unhealthy")
        if not in_status:
            exit_code = self.status_run().returncode
        else:
            found = wait_until(
                lambda: self._status_with(code, severity),
                15,
                0.3,
                f"{code} in `ha-ingestor status`",
            )
            assert found is not None
            exit_code, report = found
            assert {c["code"]: c["severity"] for c in report["checks"]}[code] == severity
            assert exit_code == {"degraded": 1, "unhealthy": 2}[report["status"]]
        wait_until(lambda: self.firing().get(code) == severity, 15, 0.3, f"alert {code} firing")
        self.note(code, severity, health, exit_code)
        return severity

    def note(self, code: str, severity: str, health: dict[str, Any], exit_code: int) -> None:
        """What each screen showed, for the record (agreement.jsonl beside the logs)."""
        alert = self.alerts().get(code, {})
        entry = {
            "code": code,
            "severity": severity,
            "health_status": health.get("status"),
            "message": next((c["message"] for c in health.get("checks", [])
                             if c["code"] == code), None),
            "status_exit_code": exit_code,
            "alert": alert.get("annotations", {}).get("description"),
        }  # fmt: skip
        with (self.tmp / "agreement.jsonl").open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")

    def _status_with(self, code: str, severity: str = "") -> tuple[int, dict[str, Any]] | None:
        exit_code, report = self.status()
        found = {c["code"]: c["severity"] for c in report["checks"]}.get(code)
        return (exit_code, report) if found and found == (severity or found) else None

    def stop_all(self) -> None:
        """Every process this stack started, by PID, Prometheus last."""
        for process in self.processes.values():
            process.stop()
        if self.prometheus is not None:
            terminate(self.prometheus, 10)

    def wait_healthy(self, timeout: float = 30) -> None:
        wait_until(lambda: not self.checks(), timeout, 0.2, "healthy again")
        wait_until(lambda: not self.firing(), 10, 0.3, "no alert firing")


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""
