"""The capacity sweep's conclusions, on small made-up sweeps: the limit and the named bottleneck."""

from __future__ import annotations

from typing import Any

from voicechat.benchmark.capacity_report import ADDED_BUDGET_MS, added_p95, max_sessions, summarise

PATH = {"resample_cpu_per_audio_s": 0.001, "vad_cpu_per_audio_s": 0.004}


def level(
    n: int,
    p95: float,
    cores: float,
    *,
    turns_per_user: float = 4,
    gil: float = 1.0,
    late: float = 2.0,
    rss: float = 200.0,
) -> dict[str, Any]:
    return {
        "sessions": n,
        "turns": int(n * turns_per_user),
        "v2v_p50_ms": p95 - 100,
        "v2v_p95_ms": p95,
        "excess_p95_ms": p95 - 900,
        "cores_used": cores,
        "rss_mb": rss + 2.5 * n,
        "gil_wait_p95_ms": gil,
        "transport_tick_late_p95_ms": late,
    }


def test_the_limit_is_the_last_level_within_50_ms_of_one_session() -> None:
    levels = [level(1, 1000, 0.03), level(10, 1020, 0.3), level(50, 1049, 1.4), level(75, 1090, 1.9)]
    assert added_p95(levels) == {"1": 0.0, "10": 20.0, "50": 49.0, "75": 90.0}
    assert max_sessions(levels, ADDED_BUDGET_MS) == 50


def test_a_level_where_answers_stopped_coming_does_not_pass_on_its_p95() -> None:
    levels = [level(1, 1000, 0.03), level(20, 1010, 0.6), level(50, 1012, 2.0, turns_per_user=0.5)]
    assert max_sessions(levels, ADDED_BUDGET_MS) == 20


def test_bottleneck_names_cpu_with_the_vad_share_when_every_core_is_busy() -> None:
    levels = [level(1, 1000, 0.03), level(50, 1040, 1.5), level(75, 1200, 1.95)]
    r = summarise(levels, 2, PATH)
    assert r["max_sessions_50ms"] == 50
    b = r["bottleneck"]
    assert b["kind"] == "cpu" and b["at_sessions"] == 75
    assert b["cpu_shares"]["vad"] == round(75 * 0.004 / 1.95, 3)
    assert r["rss_per_session_mb"] == 2.5
    assert r["cpu_bound_sessions"] == int(0.8 * 2 / r["cpu_per_session_pct"] * 100)


def test_bottleneck_names_the_gil_when_cores_are_idle_but_threads_wait() -> None:
    levels = [level(1, 1000, 0.03), level(50, 1100, 0.9, gil=12.0)]
    assert summarise(levels, 2, PATH)["bottleneck"]["kind"] == "gil"


def test_a_loaded_machine_is_named_rather_than_blamed_on_the_gil() -> None:
    levels = [level(1, 1000, 0.03), level(35, 6000, 0.75, gil=34.0)]
    levels[-1]["loadavg_1m"] = 22.0
    assert summarise(levels, 2, PATH)["bottleneck"]["kind"] == "host_contention"


def test_a_host_level_adds_up_its_replica_processes() -> None:
    """Two replicas measured together: their sessions, turns and CPU add up; the worst wait is the host's."""
    from voicechat.benchmark.capacity_run import LevelRun, level_figures
    from voicechat.benchmark.host_run import split

    assert split(5, 2) == [3, 2] and split(1, 2) == [1] and split(35, 1) == [35]

    def run(n: int, v2v: list[float], cpu: float, wall: float, gil: float) -> LevelRun:
        return LevelRun(n, 20.0, v2v, [0] * len(v2v), cpu, wall, 300.0, 5.0, gil, 0, transport_calls=n)

    a, b = run(3, [1000.0, 1100.0], 6.0, 20.0, 2.0), run(2, [1200.0], 4.0, 20.5, 9.0)
    lv = level_figures([a, b], baseline={0: 1000.0})
    assert lv["sessions"] == 5 and lv["turns"] == 3 and lv["rss_mb"] == 600.0
    assert lv["cores_used"] == round(10.0 / 20.5, 3)  # both processes' CPU over the longer window
    assert lv["gil_wait_p95_ms"] == 9.0 and lv["excess_p95_ms"] > 150  # the slower replica's turns count


def test_replicas_need_sessions(capsys: Any) -> None:
    from voicechat.cli import main

    assert main(["bench", "--replicas", "2"]) == 2
    assert "--replicas needs --sessions" in capsys.readouterr().err
    assert main(["bench", "--sessions", "5", "--replicas", "0"]) == 2
    assert "--replicas needs at least 1" in capsys.readouterr().err
