"""The store on SQLite and PostgreSQL: which database a URL names; rollups (one row per
window and segment, merged on write, exact under concurrent writers); segments and their
bound; retention; baselines fixed once complete; a database from before rollups migrated."""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from service.monitors.aggregate import Aggregate, merge
from service.monitors.baseline import sketch_of_text, sketch_text
from service.monitors.sketch import Sketch
from service.monitors.store import EXPIRED_PER_WRITE, Conflict, SQLiteStore, Store, TooManySegments, open_store
from service.settings import Settings

BASELINE = {"windows": 3, "threshold": 3.0}
_databases = itertools.count()


def test_urls_name_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = open_store(None, tmp_path / "data")
    assert isinstance(default, SQLiteStore) and default.path == tmp_path / "data" / "monitors.sqlite3"
    absolute = open_store(f"sqlite:///{tmp_path / 'abs.db'}", tmp_path)
    assert isinstance(absolute, SQLiteStore) and absolute.path == tmp_path / "abs.db"
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///rel.db", tmp_path)
    assert isinstance(relative, SQLiteStore) and (tmp_path / "rel.db").is_file()
    for store in (default, absolute, relative):
        store.close()
    with pytest.raises(ValueError, match="LOSSD_DATABASE_URL"):
        open_store("mysql://db", tmp_path)
    with pytest.raises(ValidationError):
        Settings(database_url="mysql://db")


def fresh_postgres(url: str) -> str:
    """A new empty database on the test server."""
    import psycopg

    name = f"lossd_store_{next(_databases)}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name}")
        connection.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'monitors.db'}"
    return fresh_postgres(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(database: str, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(database, tmp_path)
    yield opened
    opened.close()


def window_rows(store: Store) -> int:
    return int(store.query("SELECT COUNT(*) FROM lossd_windows")[0][0])


def test_batches_roll_up_into_one_row_per_window(store: Store) -> None:
    monitor = store.create("m", "mse", {}, 60, BASELINE)
    with pytest.raises(Conflict):
        store.create("m", "mae", {}, 60, {})
    rng = np.random.default_rng(0)
    batches = [(start, rng.gamma(2.0, 1.0 + start / 60, 300)) for start in (0, 60, 0, 120, 60, 0)]
    for start, values in batches:
        assert store.record(monitor, start, Aggregate.of(values))
    assert window_rows(store) == 3  # six batches, three windows
    windows = store.windows(monitor)
    assert [start for start, _ in windows] == [0, 60, 120]
    for start, window in windows:
        whole = Aggregate.of(np.concatenate([v for s, v in batches if s == start]))
        assert window.count == whole.count and window.total == pytest.approx(whole.total, rel=1e-12)
        assert (window.min, window.max) == (whole.min, whole.max)
        np.testing.assert_allclose(window.sketch.positive.counts, whole.sketch.positive.counts)
        assert window.quantiles() == pytest.approx(whole.quantiles(), rel=1e-12)
    sums = store.windows(monitor, sketches=False)
    assert [(s, w.count) for s, w in sums] == [(0, 900), (60, 600), (120, 300)]
    assert [s for s, _ in store.windows(monitor, since=30, until=130)] == [60, 120]
    [segment] = store.segments(monitor)
    assert segment.tags == {} and segment.latest == 120 and segment.totals.count == 1800
    assert segment.totals.total == pytest.approx(sum(float(v.sum()) for _, v in batches), rel=1e-12)
    assert store.delete("m") and not store.delete("m")
    assert not store.record(monitor, 0, Aggregate.of(np.array([1.0])))  # its monitor is gone
    assert store.segments() == [] and window_rows(store) == 0  # gone with it


def test_segments_keep_their_own_windows_within_the_bound(store: Store) -> None:
    monitor = store.create("seg", "mse", {}, 60, BASELINE, segments=["model_version", "region"])
    other = store.create("other", "mse", {}, 60, BASELINE)
    eu = {"model_version": "v3", "region": "eu"}
    us = {"model_version": "v3", "region": "us"}
    unknown = {"model_version": "v4", "region": None}
    for tags, values in ((eu, [1.0, 2.0]), (us, [10.0]), (eu, [3.0]), (unknown, [5.0])):
        assert store.record(monitor, 0, Aggregate.of(np.array(values)), tags, max_segments=3)
    with pytest.raises(TooManySegments):
        store.record(monitor, 0, Aggregate.of(np.array([7.0])), {"model_version": "v5", "region": None}, 3)
    assert store.record(monitor, 60, Aggregate.of(np.array([4.0])), eu, max_segments=3)  # an existing one
    assert store.record(other, 0, Aggregate.of(np.array([100.0])), max_segments=1)  # each monitor its own bound
    segments = {tuple(s.tags.values()): s for s in store.segments(monitor)}
    assert set(segments) == {("v3", "eu"), ("v3", "us"), ("v4", None)}
    assert segments["v3", "eu"].totals.count == 4 and segments["v3", "eu"].totals.total == 10.0
    assert [(s, w.total) for s, w in store.windows(monitor, segment_ids=[segments["v3", "eu"].id])] == [
        (0, 6.0),
        (60, 4.0),
    ]
    assert [(s, w.total) for s, w in store.windows(monitor)] == [(0, 21.0), (60, 4.0)]  # all merged
    assert store.windows(monitor, segment_ids=[]) == []
    latest = store.latest_windows()
    assert latest[segments["v3", "eu"].id][0] == 60 and latest[segments["v3", "us"].id][1].total == 10.0


def test_retention_deletes_old_windows_a_bounded_number_per_write(store: Store) -> None:
    kept = store.create("kept", "mse", {}, 60, BASELINE)
    monitor = store.create("short", "mse", {}, 60, BASELINE, retention_seconds=600)
    for start in range(0, 200 * 60, 60):
        assert store.record(monitor, start, Aggregate.of(np.array([1.0])), now=0.0)  # nothing old yet
        assert store.record(kept, start, Aggregate.of(np.array([1.0])), now=1e9)
    assert window_rows(store) == 400
    now = 200 * 60 + 30.0  # the window starting 10 minutes before the current one has ended 10 minutes ago
    assert [s for s, _ in store.windows(monitor)] == []  # readers never see expired windows (clock: now)
    store.record(monitor, 199 * 60, Aggregate.of(np.array([1.0])), now=now)  # an existing window: no work
    assert window_rows(store) == 400
    store.record(monitor, 200 * 60, Aggregate.of(np.array([1.0])), now=now)  # a new window: bounded deletion
    assert window_rows(store) == 401 - EXPIRED_PER_WRITE
    for start in range(201 * 60, 205 * 60, 60):
        store.record(monitor, start, Aggregate.of(np.array([1.0])), now=now)
    remaining = [
        int(r[0]) for r in store.query("SELECT window_start FROM lossd_windows WHERE monitor_id = ?", (monitor.id,))
    ]
    assert sorted(remaining) == [start for start in range(190 * 60, 205 * 60, 60)]
    assert len(store.windows(kept)) == 200  # another monitor's windows are not touched
    [segment] = store.segments(monitor)
    assert segment.totals.count == 206  # totals count what the deleted windows held too


def test_a_baseline_is_fixed_once_a_window_after_it_exists(store: Store) -> None:
    monitor = store.create("b", "mse", {}, 60, {"windows": 2, "threshold": 3.0}, segments=["region"])
    for start, value in ((0, 1.0), (60, 3.0)):
        store.record(monitor, start, Aggregate.of(np.array([value])), {"region": "eu"})
    assert store.segments(monitor)[0].frozen is None and store.get("b").frozen is None  # type: ignore[union-attr]
    store.record(monitor, 120, Aggregate.of(np.array([9.0])), {"region": "eu"})
    store.record(monitor, 0, Aggregate.of(np.array([100.0])), {"region": "eu"})  # late, into a baseline window
    frozen = store.segments(monitor)[0].frozen
    assert frozen is not None and store.get("b").frozen == frozen  # type: ignore[union-attr]
    # Its sketch is the baseline windows' as they were (drift is measured against it), not the late batch's.
    assert sketch_of_text(frozen.pop("sketch")).encode() == Sketch.of(np.array([1.0, 3.0])).encode()  # type: ignore[union-attr]
    assert frozen == {"count": 2, "weight": 2.0, "total": 4.0, "squares": 10.0, "until": 61}
    (drift,) = store.query("SELECT drift FROM lossd_windows WHERE window_start = 120")[0]
    assert drift == 1.0  # 9 lies above all of the baseline [1, 3]
    store.record(monitor, 180, Aggregate.of(np.array([1.0])), {"region": "us"})  # a new segment: its own
    assert store.segments(monitor)[1].frozen is None


def test_two_databases_in_one_process_keep_their_baselines_apart(tmp_path: Path) -> None:
    """Monitor ids repeat across databases: a baseline cached for one must not judge the other's."""
    first, second = (open_store(f"sqlite:///{tmp_path / name}", tmp_path) for name in ("a.db", "b.db"))
    counted = first.create("counted", "mse", {}, 60, {"windows": 3, "threshold": 3.0})
    first.record(counted, 0, Aggregate.of(np.array([1.0])))  # its id's baseline: none fixed yet
    reference = {"count": 4, "mean": 1.0, "std": 0.0, "sketch": sketch_text(Sketch.of(np.ones(4)))}
    referred = second.create("referred", "mse", {}, 60, {"threshold": 3.0, "reference": reference})
    assert referred.id == counted.id
    second.record(referred, 60, Aggregate.of(np.array([1.0, 1.5])))
    (drift,) = second.query("SELECT drift FROM lossd_windows")[0]
    assert drift == pytest.approx(0.5)  # half the window lies above the reference's one value


def test_concurrent_writers_count_exactly(store: Store) -> None:
    """Threads with their own connections add to the same windows and segments at once."""
    monitor = store.create("busy", "mse", {}, 60, BASELINE, segments=["region"])
    values = np.arange(1.0, 51.0)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(40):
                tags = {"region": ("eu", "us")[(worker + i) % 2]}
                assert store.record(monitor, 60 * (i % 3), Aggregate.of(values), tags)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    windows = store.windows(monitor)
    assert sum(w.count for _, w in windows) == 6 * 40 * 50
    assert sum(w.total for _, w in windows) == 6 * 40 * float(values.sum())
    for _, window in windows:  # every batch's sketch merged in: as many samples in the bins as counted
        assert window.sketch.positive.counts.sum() == window.count
    assert sum(s.totals.count for s in store.segments(monitor)) == 6 * 40 * 50
    assert window_rows(store) == 6


OLD_SCHEMA = """
CREATE TABLE lossd_monitors (
    id {serial} PRIMARY KEY, name TEXT NOT NULL UNIQUE, loss TEXT NOT NULL, params TEXT NOT NULL,
    window_seconds BIGINT NOT NULL, baseline TEXT NOT NULL, created DOUBLE PRECISION NOT NULL
);
CREATE TABLE lossd_observations (
    id {serial} PRIMARY KEY,
    monitor_id BIGINT NOT NULL REFERENCES lossd_monitors(id) ON DELETE CASCADE,
    window_start BIGINT NOT NULL, count BIGINT NOT NULL, weight DOUBLE PRECISION NOT NULL,
    total DOUBLE PRECISION NOT NULL, squares DOUBLE PRECISION NOT NULL, min DOUBLE PRECISION NOT NULL,
    max DOUBLE PRECISION NOT NULL, sketch {blob} NOT NULL, recorded DOUBLE PRECISION NOT NULL
)
"""


def test_a_database_of_one_row_per_batch_is_migrated(database: str, tmp_path: Path) -> None:
    """The schema before rollups, written as that version did, is rolled up on open."""
    batches = [(0, [1.0, 2.0]), (60, [3.0]), (0, [4.0]), (120, [5.0, 6.0])]
    if database.startswith("sqlite"):
        connection = sqlite3.connect(database.removeprefix("sqlite:///"), isolation_level=None)
        schema, mark = OLD_SCHEMA.format(serial="INTEGER", blob="BLOB"), "?"
    else:
        import psycopg

        connection = psycopg.connect(database, autocommit=True)  # type: ignore[assignment]
        schema, mark = OLD_SCHEMA.format(serial="BIGINT GENERATED BY DEFAULT AS IDENTITY", blob="BYTEA"), "%s"
    for statement in schema.split(";"):
        connection.execute(statement)
    marks = ", ".join([mark] * 7)
    connection.execute(
        "INSERT INTO lossd_monitors (name, loss, params, window_seconds, baseline, created) "
        f"VALUES ({', '.join([mark] * 6)})",
        ("old", "mse", "{}", 60, '{"windows": 2, "threshold": 3.0}', 1.0),
    )
    for start, values in batches:
        a = Aggregate.of(np.array(values))
        connection.execute(
            "INSERT INTO lossd_observations (monitor_id, window_start, count, weight, total, squares, min, max, "
            f"sketch, recorded) VALUES ({marks}, {mark}, {mark}, {mark})",
            (1, start, a.count, a.weight, a.total, a.squares, a.min, a.max, a.sketch.encode(), 1.0),
        )
    connection.close()
    store = open_store(database, tmp_path)
    monitor = store.get("old")
    assert monitor is not None and monitor.segments == () and monitor.retention_seconds is None
    assert [(s, w.count, w.total) for s, w in store.windows(monitor)] == [(0, 3, 7.0), (60, 1, 3.0), (120, 2, 11.0)]
    first = merge(Aggregate.of(np.array(v)) for s, v in batches if s == 0)
    np.testing.assert_array_equal(store.windows(monitor)[0][1].sketch.positive.counts, first.sketch.positive.counts)
    [segment] = store.segments(monitor)
    assert segment.totals.count == 6 and segment.latest == 120
    assert [int(r[0]) for r in store.query("SELECT batches FROM lossd_windows ORDER BY window_start")] == [2, 1, 1]
    assert store.record(monitor, 180, Aggregate.of(np.array([1.0])))  # and it takes new batches
    assert store.get("old").frozen is not None  # type: ignore[union-attr]
    store.close()
    reopened = open_store(database, tmp_path)  # opening again finds nothing to migrate
    assert sum(w.count for _, w in reopened.windows(monitor)) == 7
    reopened.close()


def test_sketches_stored_per_window_stay_small(store: Store) -> None:
    monitor = store.create("big", "mse", {}, 60, BASELINE)
    rng = np.random.default_rng(1)
    for _ in range(200):
        store.record(monitor, 0, Aggregate.of(rng.lognormal(0.0, 2.0, 1000)))
    (size,) = store.query("SELECT LENGTH(sketch) FROM lossd_windows")[0]
    assert int(size) < 16_000  # 200,000 samples: the bins of their range, not the samples
    [(_, window)] = store.windows(monitor)
    assert window.count == 200_000 and Sketch.decode(Sketch.encode(window.sketch)).zero == 0.0


def test_a_batch_for_a_deleted_monitor_is_never_recorded_in_its_successor(store: Store) -> None:
    """A batch in flight while its monitor is deleted and re-created under the same name
    (the highest id, the one SQLite would hand out again): not recorded, the new monitor empty."""
    store.create("other", "mse", {}, 60, BASELINE)
    stale = store.create("m", "mse", {}, 60, BASELINE)
    assert store.record(stale, 0, Aggregate.of(np.array([1.0, 2.0])))
    assert store.delete("m")
    fresh = store.create("m", "mae", {}, 120, BASELINE)
    assert not store.record(stale, 0, Aggregate.of(np.array([5.0])))  # the route makes it a 404
    assert not store.record(stale, 60, Aggregate.of(np.array([5.0])), {"region": "eu"})  # a new segment too
    assert store.windows(fresh) == [] and store.segments(fresh) == []
    assert fresh.id != stale.id
    store.close()
    store.initialise()  # opening again: ids still never reused
    assert store.delete("m")
    assert store.create("m", "mse", {}, 60, BASELINE).id > fresh.id


def test_a_sqlite_database_whose_ids_could_be_reused_is_rebuilt(tmp_path: Path) -> None:
    """A database of the schema before AUTOINCREMENT: its monitors, segments and windows are
    kept on open, and its ids are never handed out again from then on."""
    url = f"sqlite:///{tmp_path / 'monitors.db'}"
    connection = sqlite3.connect(tmp_path / "monitors.db", isolation_level=None)
    connection.executescript(SQLiteStore(tmp_path).schema().replace(" AUTOINCREMENT", ""))
    connection.close()
    previous = SQLiteStore(tmp_path / "monitors.db")
    kept = previous.create("kept", "mse", {}, 60, BASELINE, segments=["region"])
    doomed = previous.create("doomed", "mse", {}, 60, BASELINE)
    for start in (0, 60, 120, 180, 240):
        assert previous.record(kept, start, Aggregate.of(np.array([1.0, float(start)])), {"region": "eu"})
    assert previous.record(doomed, 0, Aggregate.of(np.array([3.0])))
    previous.close()
    store = open_store(url, tmp_path)
    (declaration,) = store.query("SELECT sql FROM sqlite_master WHERE name = 'lossd_monitors'")[0]
    assert "AUTOINCREMENT" in declaration
    reopened = store.get("kept")
    assert reopened is not None and reopened.frozen is not None  # the baseline fixed before the rebuild
    assert replace(reopened, frozen=None) == kept
    assert [(s, w.count) for s, w in store.windows(kept)] == [(s, 2) for s in (0, 60, 120, 180, 240)]
    [segment] = store.segments(kept)
    assert segment.tags == {"region": "eu"} and segment.totals.count == 10
    assert store.delete("doomed")  # the cascade still holds
    assert int(store.query("SELECT COUNT(*) FROM lossd_segments")[0][0]) == 1
    again = store.create("doomed", "mae", {}, 60, BASELINE)
    assert again.id > doomed.id and not store.record(doomed, 0, Aggregate.of(np.array([3.0])))
    assert store.windows(again) == []
    store.close()


def test_a_database_from_before_drift_gains_the_column_and_drift_from_then_on(database: str, tmp_path: Path) -> None:
    """Windows and baselines stored before drift was measured: the column is added on open,
    a baseline fixed without a sketch gives no distance (None, not an error), and a monitor
    created afterwards measures it."""
    store = open_store(database, tmp_path)
    old = store.create("old", "mse", {}, 60, {"windows": 1, "threshold": 3.0})
    for start in (0, 60):
        store.record(old, start, Aggregate.of(np.array([1.0, 2.0])))
    with store.transaction() as connection:
        connection.execute("ALTER TABLE lossd_windows DROP COLUMN drift")
        frozen = {k: v for k, v in (store.get("old").frozen or {}).items() if k != "sketch"}  # type: ignore[union-attr]
        connection.execute(store.sql("UPDATE lossd_segments SET frozen = ?"), (json.dumps(frozen),))
    store.close()
    store = open_store(database, tmp_path)
    old = store.get("old")  # type: ignore[assignment]
    store.record(old, 60, Aggregate.of(np.array([3.0])))
    assert [w.drift for _, w in store.windows(old, mergeable=False)] == [None, None]
    new = store.create("new", "mse", {}, 60, {"windows": 1, "threshold": 3.0})
    for start, values in ((0, [1.0, 2.0]), (60, [5.0, 6.0])):
        store.record(new, start, Aggregate.of(np.array(values)))
    assert [w.drift for _, w in store.windows(new, mergeable=False)] == [None, 1.0]
    store.close()
