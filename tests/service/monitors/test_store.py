"""The store: which database a URL names, append-only rows merged into windows, deletes."""

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from service.monitors.aggregate import Aggregate
from service.monitors.store import Conflict, SQLiteStore, open_store
from service.settings import Settings


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


def test_rows_merge_into_windows_and_go_with_their_monitor(tmp_path: Path) -> None:
    store = open_store(None, tmp_path)
    monitor = store.create("m", "mse", {}, 60, {"windows": 3, "threshold": 3.0})
    with pytest.raises(Conflict):
        store.create("m", "mae", {}, 60, {})
    for start, values in ((0, [1.0, 2.0]), (60, [3.0]), (0, [4.0])):
        assert store.record(monitor, start, Aggregate.of(np.array(values)))
    windows = store.windows(monitor)
    assert [(start, w.count, w.total) for start, w in windows] == [(0, 3, 7.0), (60, 1, 3.0)]
    sums = store.windows(monitor, sketches=False)
    assert [(start, w.count, w.total, w.max) for start, w in sums] == [(0, 3, 7.0, 4.0), (60, 1, 3.0, 3.0)]
    assert store.windows(monitor, since=30, until=90)[0][0] == 60
    assert store.totals()[monitor.id].count == 4 and store.latest_window_starts() == {monitor.id: 60}
    assert store.delete("m") and not store.delete("m")
    assert not store.record(monitor, 0, Aggregate.of(np.array([1.0])))  # its monitor is gone
    assert store.totals() == {}
    store.close()
