"""The shared report: one Jinja2 template, everything escaped, figures inlined, written atomically."""

from __future__ import annotations

import numpy as np
import pytest
from insectml import explain
from insectml.report import Figure, Section, Table, render, table_from_mapping, write_report


@pytest.fixture
def png(tmp_path):
    ex = explain.Example(np.random.default_rng(0).random((8, 10)), "a", "a", 0.9, heat=np.ones((2, 2)))
    return explain.class_grid({"a": {"correct": [ex], "wrong": []}}, tmp_path / "grid.png", "t", per_class=1)


def test_text_from_class_names_and_cells_is_escaped():
    html = render(
        title="<b>t</b>",
        headline={"<script>": "x"},
        sections=[Section("s", ["<img src=x onerror=alert(1)>"], [Table(["c"], [["<i>"]])])],
    )
    assert "<script>" not in html and "<img src=x" not in html and "&lt;i&gt;" in html


def test_figures_are_inlined_as_data_uris(png):
    html = render(title="t", sections=[Section("s", figures=[Figure(png, "grid")])])
    assert 'src="data:image/png;base64,' in html


def test_a_missing_figure_is_an_error_not_a_broken_image(tmp_path):
    with pytest.raises(FileNotFoundError):
        render(title="t", sections=[Section("s", figures=[Figure(tmp_path / "nope.png")])])


def test_floats_are_rounded_and_none_shows_a_dash():
    html = render(title="t", headline={"a": 0.123456789, "b": None})
    assert "0.1235" in html and "—" in html


def test_table_from_mapping_keeps_class_order():
    table = table_from_mapping({"b": {"recall": 1.0}, "a": {"recall": 0.5}})
    assert table.columns == ["class", "recall"] and [r[0] for r in table.rows] == ["b", "a"]


def test_write_report_replaces_the_file_whole(tmp_path):
    path = tmp_path / "report.html"
    path.write_text("old")
    write_report(path, title="new", lineage={"seed": 3, "code": {"commit": "abc"}})
    text = path.read_text()
    assert text.startswith("<!doctype html>") and "abc" in text and not list(tmp_path.glob("*.tmp*"))


def test_confused_pairs_skip_background_and_sort_by_count():
    matrix = [[5, 1, 4], [3, 2, 0], [9, 0, 0]]
    pairs = explain.confused_pairs(matrix, ["a", "b", "background"], skip=("background",))
    assert pairs == [("b", "a", 3), ("a", "b", 1)]


def test_pick_prefers_the_most_confident_mistakes():
    chosen = explain.pick(np.array([0, 0, 0]), np.array([1, 1, 0]), np.array([0.2, 0.9, 0.5]), per_class=1)
    assert chosen[0] == {"correct": [2], "wrong": [1]}
