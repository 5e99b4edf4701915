"""cloud_io: local paths without fsspec, remote ones through it, and a clear error when it is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from fabric_core.utilities import cloud_io
from fabric_core.utilities.cloud_io import (
    MissingFsspecError,
    atomic_save,
    get_filesystem,
    is_local_path,
    load,
)

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.fixture
def without_fsspec(monkeypatch):
    """Make ``import fsspec`` fail as if it were not installed."""
    for name in [m for m in sys.modules if m == "fsspec" or m.startswith("fsspec.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "fsspec", None)


# -- local paths --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "local"),
    [
        ("checkpoints/last.ckpt", True),
        ("/abs/last.ckpt", True),
        (Path("rel/x.pt"), True),
        ("file:///tmp/x.pt", True),
        ("s3://bucket/x.pt", False),
        ("gs://bucket/x.pt", False),
        ("memory://x.pt", False),
        ("simplecache::s3://bucket/x.pt", False),
    ],
)
def test_is_local_path(path, local):
    assert is_local_path(path) is local


def test_local_save_and_load_round_trip_without_fsspec(tmp_path, without_fsspec):
    target = tmp_path / "sub" / "state.pt"
    atomic_save({"w": torch.arange(3)}, target)
    assert torch.equal(load(target)["w"], torch.arange(3))
    assert torch.equal(load(str(target), weights_only=True)["w"], torch.arange(3))


def test_a_file_url_is_a_local_path(tmp_path, without_fsspec):
    atomic_save({"step": 3}, f"file://{tmp_path}/state.pt")
    assert torch.load(tmp_path / "state.pt")["step"] == 3
    assert load(f"file://{tmp_path}/state.pt")["step"] == 3


def test_a_failed_local_save_leaves_the_previous_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "state.pt"
    atomic_save({"version": 1}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    with pytest.raises(RuntimeError, match="cannot pickle this"):
        atomic_save({"version": 2, "bad": Unpicklable()}, target)
    assert torch.load(target)["version"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_load_reads_a_file_object(tmp_path):
    atomic_save({"a": 1}, tmp_path / "x.pt")
    with open(tmp_path / "x.pt", "rb") as f:
        assert load(f) == {"a": 1}


def test_load_from_http_defaults_to_weights_only_false(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kwargs: calls.append((url, kwargs)))
    load("https://example.com/model.pt", map_location="cpu")
    load("https://example.com/model.pt", weights_only=True)
    assert calls == [
        ("https://example.com/model.pt", {"map_location": "cpu", "weights_only": False}),
        ("https://example.com/model.pt", {"map_location": None, "weights_only": True}),
    ]


def test_lightnings_private_names_are_aliases():
    assert cloud_io._load is load
    assert cloud_io._atomic_save is atomic_save


# -- through fsspec -------------------------------------------------------------------------------------


def test_get_filesystem_of_a_local_path_is_fsspecs_local_filesystem(tmp_path):
    from fsspec.implementations.local import LocalFileSystem

    assert isinstance(get_filesystem(tmp_path), LocalFileSystem)


def test_get_filesystem_passes_storage_options(monkeypatch):
    import fsspec.core

    seen = {}

    def url_to_fs(url, **kwargs):
        seen.update(url=url, **kwargs)
        return "the filesystem", url

    monkeypatch.setattr(fsspec.core, "url_to_fs", url_to_fs)
    assert get_filesystem("s3://bucket/run", anon=True) == "the filesystem"
    assert seen == {"url": "s3://bucket/run", "anon": True}


def test_a_remote_save_and_load_round_trip_through_fsspec():
    from fsspec.implementations.memory import MemoryFileSystem

    url = "memory://fabric-core-tests/run/state.pt"
    try:
        atomic_save({"w": torch.ones(2)}, url)
        assert torch.equal(load(url)["w"], torch.ones(2))
    finally:
        MemoryFileSystem().rm("/fabric-core-tests", recursive=True)


class FakeObjectStore:
    def __init__(self) -> None:
        self.piped: dict[str, bytes] = {}
        self.in_transaction = False

    @property
    def transaction(self):
        store = self

        class Transaction:
            def __enter__(self):
                store.in_transaction = True

            def __exit__(self, *exc):
                store.in_transaction = False

        return Transaction()

    def pipe(self, path, data):
        assert self.in_transaction
        self.piped[path] = data


def test_an_object_store_gets_the_whole_checkpoint_in_one_pipe(monkeypatch):
    import fsspec.core

    store = FakeObjectStore()
    monkeypatch.setattr(fsspec.core, "url_to_fs", lambda url, **kwargs: (store, url.removeprefix("s3://")))
    atomic_save({"step": 9}, "s3://bucket/last.ckpt")
    import io

    assert torch.load(io.BytesIO(store.piped["bucket/last.ckpt"]))["step"] == 9


# -- without fsspec -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: get_filesystem("s3://bucket/x"),
        lambda: get_filesystem("/tmp/local"),  # it returns an fsspec object, even for a local path
        lambda: atomic_save({}, "s3://bucket/x.pt"),
        lambda: load("gs://bucket/x.pt"),
    ],
)
def test_fsspec_missing_is_a_module_not_found_error_with_the_install_command(without_fsspec, call):
    hint = r'needs fsspec, which is not installed: pip install "fabric-core\[cloud\]"'
    with pytest.raises(MissingFsspecError, match=hint):
        call()


def test_the_missing_fsspec_error_is_a_module_not_found_error_naming_fsspec(without_fsspec):
    with pytest.raises(ModuleNotFoundError) as caught:
        get_filesystem("s3://bucket/x")
    assert caught.value.name == "fsspec"


def test_the_cloud_extra_installs_fsspec():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert extras["cloud"] == ["fsspec>=2023.1"]
