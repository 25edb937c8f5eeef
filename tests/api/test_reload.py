"""Live reload: a new export in EXPORTS_DIR is swapped in without a restart, a broken one is refused.

Small classical exports (the session's ``tiny-lr``) copied under new versions; the swap under load runs a real
uvicorn server and 8 client connections, below the shedding threshold.
"""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from sentiment.exports import METADATA_FILE
from sentiment.manifest import ModelEntry
from sentiment.predictor import Predictor, load_predictor
from sentiment.publish import publish_state
from sentiment.registry import ModelRegistry
from sentiment.reload import ReloadReport
from tests.api.conftest import CountingPredictor, ServerThread

ADMIN = "a-long-admin-key-for-tests"


def _version(source: Path, target: Path, version: str) -> Path:
    """A copy of the export ``source`` under another version (the files and their sha256 unchanged)."""
    shutil.copytree(source, target)
    path = target / METADATA_FILE
    meta = json.loads(path.read_text())
    meta["version"] = version
    path.write_text(json.dumps(meta))
    return target


def _corrupt(folder: Path) -> Path:
    with (folder / "model.onnx").open("ab") as handle:
        handle.write(b"tampered")
    return folder


@pytest.fixture
def root(exports_dir: Path, tmp_path: Path) -> Path:
    """EXPORTS_DIR with tiny-lr version 1 published by a manifest."""
    root = tmp_path / "exports"
    root.mkdir()
    _version(exports_dir / "tiny-lr", root / "tiny-lr@1", "1")
    publish_state(root, "tiny-lr", {"tiny-lr": ModelEntry("tiny-lr@1", "1")}, "export")
    return root


def _publish(root: Path, folder: str, version: str) -> None:
    publish_state(root, "tiny-lr", {"tiny-lr": ModelEntry(folder, version)}, "retrain")


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


def test_a_new_version_is_swapped_in_and_the_old_model_freed(root: Path, exports_dir: Path, settings_factory) -> None:
    registry = ModelRegistry(settings_factory(root))
    registry.load()
    old = weakref.ref(registry.get().predictor)
    assert registry.snapshot.versions() == {"tiny-lr": "1"}

    async def scenario() -> list[str]:
        outcomes = [(await registry.reload()).outcome]
        _publish(root, _version(exports_dir / "tiny-lr", root / "tiny-lr@2", "2").name, "2")
        report = await registry.reload()
        outcomes.append(report.outcome)
        assert report.models == {"tiny-lr": "2"} and report.load_seconds is not None
        assert registry.get().version == "2"
        await registry.reloader.retired()
        outcomes.append((await registry.reload()).outcome)
        await registry.aclose()
        return outcomes

    assert asyncio.run(scenario()) == ["unchanged", "swapped", "unchanged"]
    gc.collect()
    assert old() is None, gc.get_referrers(old())


def test_a_broken_export_is_refused_once_and_the_old_model_keeps_serving(root: Path, exports_dir: Path,
                                                                          settings_factory) -> None:
    registry = ModelRegistry(settings_factory(root))
    registry.load()
    served = registry.get()

    async def scenario() -> None:
        _corrupt(_version(exports_dir / "tiny-lr", root / "tiny-lr@2", "2"))
        _publish(root, "tiny-lr@2", "2")
        report = await registry.reload()
        assert report.outcome == "refused" and "sha256" in (report.detail or "")
        assert report.models == {"tiny-lr": "1"}
        assert registry.get() is served and "sha256" in (registry.reloader.error or "")
        # The watcher does not retry the same broken change; a fixed publication is served.
        assert (await registry.reload()).outcome == "refused"
        _publish(root, _version(exports_dir / "tiny-lr", root / "tiny-lr@3", "3").name, "3")
        assert (await registry.reload()).outcome == "swapped"
        assert registry.reloader.error is None
        await registry.aclose()

    asyncio.run(scenario())
    assert registry.get().version == "3"


def test_without_a_manifest_a_new_version_in_a_folder_is_noticed(exports_dir: Path, tmp_path: Path,
                                                                   settings_factory) -> None:
    root = tmp_path / "exports"
    _version(exports_dir / "tiny-lr", root / "tiny-lr", "1")
    _corrupt(_version(exports_dir / "tiny-bert", root / "tiny-bert", "1"))  # skipped at start
    # tiny-bert is the champion: serving without it takes the operator's word (DEFAULT_MODEL), never a silent swap.
    registry = ModelRegistry(settings_factory(root, default_model="tiny-lr"))
    registry.load()
    assert "sha256" in registry.skipped["tiny-bert"]

    async def scenario() -> str:
        # Publishing without a manifest: the new version replaces the folder (a rename, as a publisher would).
        staged = _version(exports_dir / "tiny-lr", tmp_path / "staged", "2")
        shutil.rmtree(root / "tiny-lr")
        staged.rename(root / "tiny-lr")
        outcome = (await registry.reload()).outcome  # the broken export skipped at start does not block it
        await registry.aclose()
        return outcome

    assert asyncio.run(scenario()) == "swapped"
    assert registry.snapshot.versions() == {"tiny-lr": "2"}
    assert "tiny-bert" in registry.skipped


def test_an_export_refused_while_half_copied_is_served_once_complete(exports_dir: Path, tmp_path: Path,
                                                                     settings_factory) -> None:
    root = tmp_path / "exports"
    _version(exports_dir / "tiny-lr", root / "tiny-lr", "1")
    registry = ModelRegistry(settings_factory(root))
    registry.load()

    async def scenario() -> list[str]:
        copying = root / "tiny-bert"
        copying.mkdir()
        shutil.copy(exports_dir / "tiny-bert" / METADATA_FILE, copying)  # the graph is not there yet
        outcomes = [(await registry.reload()).outcome]
        shutil.copy(exports_dir / "tiny-bert" / "tokenizer.json", copying)
        shutil.copy(exports_dir / "tiny-bert" / "model.onnx", copying)
        outcomes.append((await registry.reload()).outcome)
        await registry.aclose()
        return outcomes

    assert asyncio.run(scenario()) == ["refused", "swapped"]
    assert sorted(registry.snapshot.versions()) == ["tiny-bert", "tiny-lr"]


def test_the_manifest_champion_is_the_default(exports_dir: Path, tmp_path: Path, settings_factory) -> None:
    root = tmp_path / "exports"
    _version(exports_dir / "tiny-lr", root / "tiny-lr", "1")
    _version(exports_dir / "tiny-bert", root / "tiny-bert", "1")  # aliased champion in its metadata
    publish_state(root, "tiny-lr", {"tiny-lr": ModelEntry("tiny-lr", "1"), "tiny-bert": ModelEntry("tiny-bert", "1")},
                  "export")
    registry = ModelRegistry(settings_factory(root))
    registry.load()
    assert registry.default_name == registry.champion == "tiny-lr"


@pytest.fixture
def admin_client(root: Path, settings_factory) -> Iterator[Callable[..., TestClient]]:
    clients = []

    def make(**overrides) -> TestClient:
        client = TestClient(create_app(settings_factory(root, reload_interval_s=0, **overrides)))
        client.__enter__()
        clients.append(client)
        # The lifespan loads in a background thread; wait for it, or the first /readyz races the load (503).
        client.app.state.registry.load()
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_the_reload_route_needs_the_admin_key(admin_client) -> None:
    assert admin_client().post("/v1/admin/reload").status_code == 403  # no key configured: disabled
    client = admin_client(admin_key=ADMIN, api_keys=("client-key-1",))
    assert client.post("/v1/admin/reload").status_code == 401
    assert client.post("/v1/admin/reload", headers={"X-API-Key": "client-key-1"}).status_code == 401
    answer = client.post("/v1/admin/reload", headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "unchanged" and answer.json()["models"] == {"tiny-lr": "1"}
    # Without ADMIN_KEY the API keys open it.
    client = admin_client(api_keys=("client-key-1",))
    assert client.post("/v1/admin/reload", headers={"X-API-Key": "client-key-1"}).status_code == 200


def test_a_refused_change_is_reported_by_readyz_and_metrics(admin_client, root: Path, exports_dir: Path) -> None:
    client = admin_client(admin_key=ADMIN)
    assert client.get("/readyz").status_code == 200
    _corrupt(_version(exports_dir / "tiny-lr", root / "tiny-lr@2", "2"))
    _publish(root, "tiny-lr@2", "2")
    answer = client.post("/v1/admin/reload", headers={"X-API-Key": ADMIN})
    assert answer.status_code == 409 and "sha256" in answer.json()["detail"]
    ready = client.get("/readyz")
    # Still ready: the old model serves; the probe says why the new one is not.
    assert ready.status_code == 200
    assert ready.json()["versions"] == {"tiny-lr": "1"}
    assert "sha256" in ready.json()["reload"]["last_error"]
    metrics = client.get("/metrics").text
    assert _metric(metrics, "model_reloads_total", outcome="refused") == 1
    assert _metric(metrics, "model_served_info", model="tiny-lr", version="1") == 1
    assert client.post("/v1/predict", json={"text": "lovely crew"}).json()["version"] == "1"


def test_the_watcher_notices_a_publication(root: Path, exports_dir: Path, settings_factory) -> None:
    with TestClient(create_app(settings_factory(root, reload_interval_s=0.05))) as client:
        client.app.state.registry.load()
        _publish(root, _version(exports_dir / "tiny-lr", root / "tiny-lr@2", "2").name, "2")
        for _ in range(200):
            if client.get("/readyz").json()["versions"] == {"tiny-lr": "2"}:
                break
            time.sleep(0.05)
        assert client.post("/v1/predict", json={"text": "lovely crew"}).json()["version"] == "2"
        assert client.get("/v1/models").json()["models"][0]["version"] == "2"


@pytest.fixture
def server(root: Path, settings_factory) -> Iterator[tuple[str, dict[str, weakref.ref]]]:
    """uvicorn on a free port; each model call takes 20 ms and loading version 2 takes 1 s (a big model)."""
    loaded: dict[str, weakref.ref] = {}

    def loader(folder: Path, threads: int | None = None) -> Predictor:
        predictor = CountingPredictor(load_predictor(folder, threads=threads), delay_s=0.02)
        if predictor.version == "2":
            time.sleep(1.0)
        loaded[predictor.version] = weakref.ref(predictor)
        return predictor

    settings = settings_factory(root, admin_key=ADMIN, reload_interval_s=0)
    server = ServerThread(create_app(settings, registry=ModelRegistry(settings, loader=loader))).start()
    yield server.base, loaded
    server.stop()


def test_swap_under_load_fails_no_request(server, root: Path, exports_dir: Path) -> None:
    """8 connections send tweets without pause while version 2 is loaded (1 s) and swapped in."""
    base, loaded = server
    records: list[tuple[float, float, int, str | None]] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            while not stop.is_set():
                began = time.monotonic()
                answer = http.post("/v1/predict", json={"text": "the crew was lovely and the flight early"})
                version = answer.json().get("version") if answer.status_code == 200 else None
                records.append((began, time.monotonic(), answer.status_code, version))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        while len(records) < 50:
            time.sleep(0.01)
        _publish(root, _version(exports_dir / "tiny-lr", root / "tiny-lr@2", "2").name, "2")
        reload_began = time.monotonic()
        answer = httpx.post(f"{base}/v1/admin/reload", headers={"X-API-Key": ADMIN}, timeout=30)
        swapped = time.monotonic()
        count = len(records)
        while len(records) < count + 50:
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    report = answer.json()
    assert answer.status_code == 200 and report["outcome"] == "swapped", report
    assert [r for r in records if r[2] != 200] == []
    assert {r[3] for r in records} == {"1", "2"}
    assert {r[3] for r in records if r[0] > swapped} == {"2"}
    during = [r for r in records if reload_began < r[1] < swapped]
    assert during, "requests were answered while version 2 loaded"
    # Measured figures, printed with `pytest -s` (no timing assertion).
    latencies = sorted(r[1] - r[0] for r in during)
    print(f"\nswap under load: load+warm-up {report['load_seconds']:.3f} s, swap {report['swap_seconds'] * 1e3:.3f} ms, "
          f"{len(during)} requests answered during the reload, p50 {latencies[len(latencies) // 2] * 1e3:.1f} ms, "
          f"max {latencies[-1] * 1e3:.1f} ms; {len(records)} requests in all, 0 failed")
    metrics = httpx.get(f"{base}/metrics").text
    assert _metric(metrics, "model_reloads_total", outcome="swapped") == 1
    assert _metric(metrics, "model_served_info", model="tiny-lr", version="2", default="true") == 1
    assert _metric(metrics, "model_served_info", model="tiny-lr", version="1") == 0
    for _ in range(200):  # the old model is freed once its last requests are answered
        gc.collect()
        if loaded["1"]() is None:
            break
        time.sleep(0.05)
    assert loaded["1"]() is None


def test_reload_settings_are_checked(settings_factory, tmp_path: Path) -> None:
    from pydantic import ValidationError

    assert settings_factory(tmp_path).reload_interval_s == 10  # within the 30 s
    for overrides in ({"reload_interval_s": 31}, {"reload_interval_s": -1}, {"admin_key": "changeme"}):
        with pytest.raises(ValidationError):
            settings_factory(tmp_path, **overrides)
    assert settings_factory(tmp_path, admin_key="").admin_key is None  # an empty ADMIN_KEY= leaves it unset


def test_a_champion_damaged_in_place_is_never_replaced_silently(exports_dir: Path, tmp_path: Path,
                                                                settings_factory) -> None:
    """Audit: a truncated model file behind an unchanged metadata.json was reused by a reload ("unchanged", no
    error), and after a restart another model silently became the default and the champion."""
    root = tmp_path / "exports"
    _version(exports_dir / "tiny-lr", root / "tiny-lr", "1")
    _version(exports_dir / "tiny-bert", root / "tiny-bert", "1")  # aliased champion
    registry = ModelRegistry(settings_factory(root))
    registry.load()
    assert registry.default_name == "tiny-bert"
    model = root / "tiny-bert" / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])  # truncated in place

    async def reload() -> ReloadReport:
        report = await registry.reload()
        await registry.aclose()
        return report

    report = asyncio.run(reload())
    assert report.outcome == "refused" and "sha256" in (report.detail or "")
    assert registry.default_name == "tiny-bert" and registry.reloader.error  # the loaded copy keeps serving

    restarted = ModelRegistry(settings_factory(root))
    restarted.load()
    assert not restarted.ready
    with TestClient(create_app(settings_factory(root), restarted)) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "champion 'tiny-bert' could not be loaded" in ready.text and "DEFAULT_MODEL" in ready.text


def test_a_burst_of_reloads_costs_at_most_two_builds(root: Path, exports_dir: Path, settings_factory,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit: 100 parallel admin reloads each redid the whole load (the last answered after 50-57 s)."""
    registry = ModelRegistry(settings_factory(root, reload_interval_s=0))
    registry.load()
    builds: list[int] = []
    real_build = registry.build

    def counted(plan, current):
        builds.append(1)
        time.sleep(0.05)
        return real_build(plan, current)

    monkeypatch.setattr(registry, "build", counted)
    _corrupt(_version(exports_dir / "tiny-bert", root / "tiny-bert@2", "2"))
    publish_state(root, "tiny-lr", {"tiny-lr": ModelEntry("tiny-lr@1", "1"), "tiny-bert": ModelEntry("tiny-bert@2", "2")},
                  "export")

    async def burst() -> list[ReloadReport]:
        reports = await asyncio.gather(*(registry.reload(retry_refused=True) for _ in range(100)))
        await registry.aclose()
        return reports

    reports = asyncio.run(burst())
    assert {r.outcome for r in reports} == {"refused"} and all("sha256" in (r.detail or "") for r in reports)
    assert len(builds) <= 2
