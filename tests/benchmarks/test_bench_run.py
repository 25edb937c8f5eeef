"""The serving benchmark's pieces: synthetic tweets, percentiles, targets and the markdown table."""

from __future__ import annotations

import asyncio

from benchmarks.loadgen import Run, _pct
from benchmarks.run import check_targets, to_markdown
from benchmarks.tweets import make_tweets


def test_tweets_are_deterministic_and_varied() -> None:
    tweets = make_tweets(200, seed=1)
    assert tweets == make_tweets(200, seed=1) and tweets != make_tweets(200, seed=2)
    assert len(set(tweets)) > 150
    assert min(len(t.split()) for t in tweets) >= 5 and max(len(t.split()) for t in tweets) <= 60


def test_percentiles_and_summary() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (_pct(values, 50), _pct(values, 95), _pct(values, 99)) == (50.0, 95.0, 99.0)
    run = Run(requests=4, tweets=8, seconds=2.0, latencies_ms=[1.0, 2.0, 3.0, 4.0])
    assert run.summary()["tweets_per_s"] == 4.0 and run.summary()["p50_ms"] == 2.0


def _row(server: str, p50: float, tps: float, ready: float = 1.0, rss: float = 300.0) -> dict:
    summary = {"p50_ms": p50, "p95_ms": p50, "p99_ms": p50, "tweets_per_s": tps}
    return {"server": server, "model": "m", "ready_s": ready, "rss_mb": rss, "latency_c1": summary,
            "single_c16": summary, "batch_256": summary}


def test_targets_and_markdown() -> None:
    rows = [_row("this service", 2.0, 600.0), _row("seed-style server", 10.0, 100.0)]
    targets = check_targets(rows, 16)
    assert [t["met"] for t in targets] == [True, True, True, True, True]
    assert check_targets([_row("this service", 6.0, 400.0, ready=6, rss=600)], 16)[0]["met"] is False
    report = {"settings": {"concurrency": 16, "batch_size": 256}, "results": rows, "targets": targets,
              "skipped": [{"server": "mlflow models serve", "reason": "not installed"}],
              "machine": {"cpus": 2, "platform": "x", "python": "3.11", "load_before": [0.1], "load_after": [1]},
              "started_at": "now"}
    markdown = to_markdown(report)
    assert "| this service | m | 1.0 | 300.0 | 2.0 / 2.0 / 2.0 | 600.0 |" in markdown
    assert "skipped: not installed" in markdown and "| yes |" in markdown


def test_loadgen_against_a_tiny_server() -> None:
    """The hand-written HTTP client speaks to a real server over loopback."""
    from benchmarks.loadgen import load

    async def scenario() -> dict:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{\"ok\": true}")
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            run = await load("127.0.0.1", port, "/x", lambda n: ({"n": n}, 2), concurrency=3, max_requests=30,
                             max_seconds=10)
        return run.summary()

    summary = asyncio.run(scenario())
    assert summary["requests"] == 30 and summary["tweets"] == 60 and summary["errors"] == 0
