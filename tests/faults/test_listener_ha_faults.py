"""The listener when HA misbehaves, with real processes: refused and changed tokens, a silent HA,
an HA unreachable for a while, malformed frames, history read back in pages. Nothing is lost."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.expectations import ha_states
from tests.helpers import InfluxDatabase, wait_until
from tests.processes import AppProcess, listener_argv
from tests.sim_thread import SimulatorThread
from tests.stack import TOKEN, Stack, assert_everything_landed

pytestmark = pytest.mark.faults


def test_a_wrong_token_stops_the_retries_not_the_process(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    """auth_invalid: up and unhealthy; 5 restarts cost 1 failed login; SIGHUP recovers."""
    sim = SimulatorThread(token=TOKEN).start()
    stack = Stack(tmp_path, sim, redis_url, influx_db)
    token_file = tmp_path / "ha-token"
    token_file.write_text("wrong-token-4242\n", encoding="utf-8")
    env = {k: v for k, v in stack.env(HA_TOKEN_FILE=str(token_file)).items() if k != "HA_TOKEN"}
    try:
        for restart in range(6):  # the first start, then 5 restarts by a process manager
            listener = AppProcess("listener", listener_argv(), env, tmp_path).start()
            stack.processes.append(listener)
            wait_until(
                lambda: _state(stack) == "auth_invalid", 20, message=f"auth_invalid ({restart})"
            )
            # The state changes first; the time of the next try is set right after it.
            wait_until(lambda: stack.health()["listener"]["auth_retry_at"], 5,
                       message="the next login time")  # fmt: skip
            health = stack.health()
            assert health["status"] == "unhealthy"
            assert [c["code"] for c in health["checks"]][:1] == ["auth_invalid"]
            assert "SIGHUP" in health["reasons"][0]
            assert health["listener"]["auth_retry_at"] is not None
            assert listener.running(), "the process stays up"
            if restart < 5:
                assert listener.stop() == 0
        failed_logins = sim.do(lambda: sim.sim.auth_failures)
        assert failed_logins == 1, f"{failed_logins} failed logins for 6 starts"
        log = listener.log_text()
        assert "wrong-token-4242" not in log
        token_file.write_text(TOKEN, encoding="utf-8")
        listener.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        stack.wait_subscribed()
        assert sim.do(lambda: sim.sim.auth_failures) == 1
        assert not (tmp_path / "data" / "auth-refused.json").exists()
        print(f"auth_invalid: 6 starts, {failed_logins} failed login; SIGHUP logged in again")
    finally:
        stack.stop()
        sim.stop()


def test_a_changed_token_is_tried_at_once_the_refused_one_waits_its_hour(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    """A user refused for a wrong token fixes `.env` and restarts: the new token is tried at
    once (on a restart and on SIGHUP), while a restart with the token HA refused still waits.
    The refusal names its token by a salted fingerprint, never by the token."""
    sim = SimulatorThread(token=TOKEN).start()
    stack = Stack(tmp_path, sim, redis_url, influx_db)
    token_file = tmp_path / "ha-token"
    env = {k: v for k, v in stack.env(HA_TOKEN_FILE=str(token_file)).items() if k != "HA_TOKEN"}
    marker = tmp_path / "data" / "auth-refused.json"
    wrong = ["wrong-token-first-1111", "wrong-token-second-2222", "wrong-token-third-3333"]

    def failures() -> int:
        return int(sim.do(lambda: sim.sim.auth_failures))

    def start(token: str) -> AppProcess:
        token_file.write_text(f"{token}\n", encoding="utf-8")
        listener = AppProcess("listener", listener_argv(), env, tmp_path).start()
        stack.processes.append(listener)
        return listener

    def held(listener: AppProcess, refused: int, what: str) -> None:
        """Up, unhealthy, waiting for the next login time: `refused` failed logins so far."""
        wait_until(lambda: _state(stack) == "auth_invalid", 20, message=f"auth_invalid ({what})")
        wait_until(lambda: stack.health()["listener"]["auth_retry_at"], 5,
                   message=f"the next login time ({what})")  # fmt: skip
        assert failures() == refused, what
        assert listener.running()

    try:
        first = start(wrong[0])
        held(first, 1, "the first wrong token")
        assert first.stop() == 0
        same = start(wrong[0])
        held(same, 1, "a restart with the refused token")
        assert stack.health()["connection"]["attempts"] == 0, "it did not even try"
        assert "next login try in 60 min" in same.log_text()
        assert same.stop() == 0
        changed = start(wrong[1])
        held(changed, 2, "a restart with another token: tried at once")
        assert "; this one is tried at once" in changed.log_text()
        token_file.write_text(wrong[2], encoding="utf-8")
        changed.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_until(lambda: failures() == 3, 10, message="SIGHUP: the new token tried at once")
        held(changed, 3, "after SIGHUP with a third token")
        refusal = marker.read_text(encoding="utf-8")
        assert changed.stop() == 0
        third = start(wrong[2])
        held(third, 3, "a restart with the token refused after SIGHUP")
        assert stack.health()["connection"]["attempts"] == 0
        assert third.stop() == 0
        started = time.monotonic()
        fixed = start(TOKEN)
        stack.wait_subscribed()
        print(
            f"auth_invalid: a changed token logged in {time.monotonic() - started:.1f} s after "
            f"the restart; the refused one waited; {failures()} failed logins for 3 wrong tokens"
        )
        assert failures() == 3
        assert not marker.exists()
        logs = "".join(p.log_text() for p in (first, same, changed, third, fixed))
        for token in (*wrong, TOKEN):
            assert token not in refusal
            assert token not in logs
    finally:
        stack.stop()
        sim.stop()


def _state(stack: Stack) -> str | None:
    try:
        return str(stack.health()["connection"]["state"])
    except OSError:
        return None


def test_a_silent_ha_is_detected_by_the_heartbeat(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    sim = SimulatorThread(token=TOKEN, rate=20).start()
    stack = Stack(tmp_path, sim, redis_url, influx_db)
    try:
        listener = stack.start_listener()
        stack.wait_subscribed()
        # A hung HA: the socket stays open, but nothing comes, not even a pong.
        sim.do(sim.sim.pause_events)
        sim.do(sim.sim.set_answer_pings, False)
        wait_until(lambda: "no pong within" in listener.log_text(), 10, message="dead link seen")
        sim.do(sim.sim.set_answer_pings, True)
        sim.do(sim.sim.resume_events)
        wait_until(
            lambda: sim.do(lambda: sim.sim.clients_connected) >= 2 and stack.subscribed(),
            15,
            message="reconnected and subscribed again",
        )
        assert stack.health()["connection"]["reconnects"] >= 1
    finally:
        stack.stop()
        sim.stop()


def test_ha_unreachable_for_a_while_is_backfilled_from_history(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    record = tmp_path / "sent.jsonl"
    sim = SimulatorThread(
        token=TOKEN,
        rate=200,
        events=4000,
        entities=30,
        record_path=record,
        recorder_commit_interval=1.0,
    ).start(paused=True)
    stack = Stack(tmp_path, sim, redis_url, influx_db)
    try:
        initial = ha_states(sim.sim.url, TOKEN)
        stack.start_worker()
        listener = stack.start_listener()
        stack.wait_ready(len(initial))
        sim.do(sim.sim.resume_events)
        wait_until(lambda: stack.health()["subscription"]["total_events_received"] >= 800, 20)
        # HA restarts: clients dropped (1006), unreachable for a while, its entities go on.
        sim.do(sim.sim.set_accepting, False)
        sim.call(sim.sim.drop_clients())
        missed_from = sim.do(lambda: sim.sim.events_emitted)
        wait_until(lambda: sim.do(lambda: sim.sim.events_emitted) >= missed_from + 1000, 20)
        sim.do(sim.sim.set_accepting, True)
        sim.call(sim.sim.wait_done(), timeout=60)
        assert_everything_landed(influx_db, initial, record, 90)
        health = stack.health()
        assert health["connection"]["reconnects"] >= 1
        log = listener.log_text()
        assert "connection closed (code 1006)" in log
        assert log.count("backfill: enqueued") >= 2, "asked again after the commit interval"
    finally:
        stack.stop()
        sim.stop()


def test_malformed_frames_are_counted_and_skipped(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    record = tmp_path / "sent.jsonl"
    sim = SimulatorThread(token=TOKEN, rate=100, events=600, record_path=record).start(paused=True)
    stack = Stack(tmp_path, sim, redis_url, influx_db)
    try:
        initial = ha_states(sim.sim.url, TOKEN)
        stack.start_worker()
        listener = stack.start_listener()
        stack.wait_ready(len(initial))
        subscription = stack.health()["subscription"]
        assert subscription["is_subscribed"]
        for frame in (
            "this is not JSON",
            "[1, 2, 3]",
            '"a string"',
            '{"type": "event", "id": 2, "event": "not an object"}',
            '{"id": 99999, "type": "something_new", "payload": {}}',
            '{"type": "result", "id": "not-a-number", "success": true}',
            "[" * 100_000,  # RecursionError in json: it once ended the process
            '{"type": "event", "id": [2], "event": {"event_type": "state_changed"}}',
            '{"type": "event", "id": 2, "event": {"event_type": ["state_changed"]}}',
            '{"type": ["result"], "id": 1}',
        ):
            sim.do(sim.sim.send_raw, frame)
        wait_until(lambda: stack.health()["listener"]["malformed_frames"] >= 8, 10)
        skipped = stack.health()["listener"]["skipped_messages"]
        assert {"too_deep", "bad_event_type", "bad_type", "bad_id", "not_json"} <= set(skipped)
        # A frame beyond the size limit: the connection is dropped, never the process.
        sim.do(sim.sim.send_raw, '{"type": "event", "id": 2, "junk": "' + "x" * (65 << 20) + '"}')
        wait_until(lambda: "too big" in listener.log_text(), 20, message="the giant frame seen")
        stack.wait_subscribed()
        sim.do(sim.sim.resume_events)
        sim.call(sim.sim.wait_done(), timeout=30)
        assert_everything_landed(influx_db, initial, record, 60)
        assert listener.running()
        log = listener.log_text()
        assert "frame is not JSON" in log
        assert "Traceback" not in log
    finally:
        stack.stop()
        sim.stop()


def test_a_night_is_backfilled_in_pages_through_a_timeout_and_a_kill(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    """A 3-hour gap whose history passes the (lowered) frame cap is read in
    bounded windows; a request that times out is retried; a listener killed mid-backfill
    resumes from its cursor, not from its newer live watermark. Every state lands once."""
    record = tmp_path / "sent.jsonl"
    sim = SimulatorThread(
        token=TOKEN,
        rate=20,
        events=600,
        entities=30,
        record_path=record,
        past_hours=3,
        past_events=12000,
    ).start(paused=True)
    gap_from_us = sim.sim._past_from_us + 30_000_000  # after the home's first states
    data = tmp_path / "data"
    data.mkdir()
    gap_from = datetime.fromtimestamp(gap_from_us / 1e6).astimezone().isoformat()
    (data / "listener-state.json").write_text(json.dumps({"handed_off_through": gap_from}))
    whole = sim.do(
        lambda: sim.sim.home.history_during_period(
            gap_from_us, 2**62, include_start_time_state=False, significant_changes_only=False
        )
    )
    whole_bytes = len(json.dumps(whole))
    assert whole_bytes > 1 << 20, "the gap's history in one reply would pass the frame cap"
    # Request 5 is left unanswered: the first listener is killed while it waits for it; the
    # restarted one's first request (6) times out once and is retried.
    sim.do(sim.sim.leave_history_unanswered, {5, 6})
    paging = {
        "HA_MAX_FRAME_MB": "1",
        "BACKFILL_WINDOW": "1800",
        "BACKFILL_ENTITIES_PER_REQUEST": "10",
        "BACKFILL_REPLY_TIMEOUT": "6",
    }
    stack = Stack(tmp_path, sim, redis_url, influx_db, paging)
    cursor_file = data / "backfill-cursor.json"
    try:
        initial = ha_states(sim.sim.url, TOKEN)
        stack.start_worker()
        listener = stack.start_listener()
        stack.wait_subscribed()
        sim.do(sim.sim.resume_events)
        wait_until(lambda: sim.do(lambda: sim.sim.history_requests) >= 5, 30, message="req 5")
        # While request 5 waits: live events are handed off and their watermark saved, so
        # only the cursor can take the restart back to the night.
        wait_until(
            lambda: (
                json.loads((data / "listener-state.json").read_text())["handed_off_through"]
                != gap_from
            ),
            5,
            message="the live watermark saved",
        )
        listener.kill()
        cursor = json.loads(cursor_file.read_text())
        assert datetime.fromisoformat(cursor["next_window_start"]) > datetime.fromisoformat(
            gap_from
        ), "the windows answered before the kill moved the cursor"
        watermark = json.loads((data / "listener-state.json").read_text())
        restarted = stack.start_listener()
        sim.call(sim.sim.wait_done(), timeout=60)
        expected, found = assert_everything_landed(influx_db, initial, record, 120)
        wait_until(lambda: not cursor_file.exists(), 30, message="the cursor cleared")
        log = restarted.log_text()
        assert "retrying in" in log, "the request that timed out was retried"
        assert "too big" not in listener.log_text() + log
        requests = sim.do(lambda: sim.sim.history_requests)
        backfilled = stack.health()["listener"]["backfilled_states"]
        print(
            f"3 h gap, history {whole_bytes / 1e6:.1f} MB vs a 1 MB frame cap: {requests} "
            f"history requests (2 unanswered: a kill, a retry); cursor at the kill "
            f"{cursor['next_window_start']} (live watermark {watermark}); "
            f"{backfilled} states backfilled by the restart; "
            f"{expected} points expected, {found} found"
        )
    finally:
        stack.stop()
        sim.stop()


def test_a_window_too_big_for_the_frame_cap_is_asked_again_smaller(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    """A 3-hour gap asked as ONE window whose reply passes the (lowered) frame cap: each
    attempt that finishes no window halves the next one, until the replies fit. Every state
    lands once, instead of the same too-big request ending the connection forever."""
    record = tmp_path / "sent.jsonl"
    sim = SimulatorThread(
        token=TOKEN, rate=20, events=200, entities=30, record_path=record,
        past_hours=3, past_events=12000,
    ).start(paused=True)  # fmt: skip
    gap_from_us = sim.sim._past_from_us + 30_000_000
    data = tmp_path / "data"
    data.mkdir()
    gap_from = datetime.fromtimestamp(gap_from_us / 1e6).astimezone().isoformat()
    (data / "listener-state.json").write_text(json.dumps({"handed_off_through": gap_from}))
    one_window = {
        "HA_MAX_FRAME_MB": "1",
        "BACKFILL_WINDOW": "14400",  # the whole gap in one request: about 2 MB of history
        "BACKFILL_ENTITIES_PER_REQUEST": "200",
    }
    stack = Stack(tmp_path, sim, redis_url, influx_db, one_window)
    try:
        initial = ha_states(sim.sim.url, TOKEN)
        stack.start_worker()
        listener = stack.start_listener()
        stack.wait_subscribed()
        sim.do(sim.sim.resume_events)
        sim.call(sim.sim.wait_done(), timeout=60)
        expected, found = assert_everything_landed(influx_db, initial, record, 120)
        wait_until(lambda: not (data / "backfill-cursor.json").exists(), 60, message="done")
        log = listener.log_text()
        assert "too big" in log, "the first reply passed the frame cap"
        assert "asking for" in log, "the next attempt asked for smaller windows"
        print(
            f"one 3 h window over a 1 MB cap: {log.count('asking for')} smaller attempts, "
            f"{sim.do(lambda: sim.sim.history_requests)} history requests; "
            f"{expected} points expected, {found} found"
        )
    finally:
        stack.stop()
        sim.stop()
