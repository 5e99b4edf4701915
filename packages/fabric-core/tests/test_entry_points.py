"""The fast entry-point scan finds exactly what importlib.metadata finds."""

from __future__ import annotations

import sys
import zipfile

import pytest

from fabric_core.plugins import entry_points


@pytest.mark.parametrize("group", ["fabric", "console_scripts", "pytest11", "no-such-group"])
def test_scan_agrees_with_importlib_metadata(group):
    assert sorted(entry_points._scan(group)) == sorted(entry_points._with_importlib(group))


def _fake_distribution(root, name="acme-plugin", version="1.2", group="fabric", extra=""):
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nbody\n")
    text = f"[other]\nx = a:b\n\n[{group}]\n# a comment\nacme = acme_plugin.hooks\n{extra}"
    (info / "entry_points.txt").write_text(text)


def test_scan_reads_name_version_and_only_the_group(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, extra="second = acme_plugin.more\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = [ep for ep in entry_points.find("fabric") if ep.distribution == "acme-plugin"]
    assert found == [
        entry_points.EntryPoint("acme", "acme_plugin.hooks", "acme-plugin", "1.2"),
        entry_points.EntryPoint("second", "acme_plugin.more", "acme-plugin", "1.2"),
    ]


def test_a_zipped_path_entry_falls_back_to_importlib_metadata(tmp_path, monkeypatch):
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("zipped_plugin-3.0.dist-info/METADATA", "Name: zipped-plugin\nVersion: 3.0\n\n")
        z.writestr("zipped_plugin-3.0.dist-info/entry_points.txt", "[fabric]\nzipped = zipped_plugin\n")
    monkeypatch.setattr(sys, "path", [str(archive), *sys.path])
    assert entry_points._scan("fabric") is None
    assert entry_points.EntryPoint("zipped", "zipped_plugin", "zipped-plugin", "3.0") in entry_points.find("fabric")


def test_a_custom_distribution_finder_falls_back_to_importlib_metadata(monkeypatch):
    class Finder:
        @staticmethod
        def find_spec(*args, **kwargs):
            return None

        @staticmethod
        def find_distributions(*args, **kwargs):
            return iter(())

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Finder])
    assert not entry_points._standard_finders_only()
