"""``lidsplit complexity``: exit codes, JSON and chart output, trees, tables, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata

import pytest
import torch

from lidsplit.cli.main import SUBCOMMANDS, build_parser, main
from lidsplit.complexity import AccuracyTable, arch_key
from lidsplit.spaces import build
from lidsplit.split import SplitTree

TINY = 'nb201:{"C": 2, "ops": ["none", "skip_connect", "nor_conv_3x3"]}'
FAST = ["--samples", "3", "--batch-size", "6", "--data", "synthetic"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_json_and_chart(tmp_path, capsys):
    out, png = tmp_path / "scores.json", tmp_path / "spider.png"
    rc = main(["complexity", "--space", TINY, "--space", "nb201", "--no-proxy", "--json", str(out),
               "--chart", str(png), "--title", "t"])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["format"] == "lidsplit.complexity"
    assert [s["name"] for s in rep["spaces"]] == ["nb201", "nb201 #2"]
    assert [s["size"] for s in rep["spaces"]] == [729, 15625]
    assert png.read_bytes()[:4] == b"\x89PNG"
    text = capsys.readouterr().out
    assert "size=729" in text and "JSON:" in text


def test_proxy_run_to_stdout(capsys):
    rc = main(["complexity", "--space", TINY, *FAST, "--repeats", "2", "--json", "-"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    p = rep["spaces"][0]["performance_diversity"]
    assert p["pds"] is None and p["repeats"] == 2 and p["n_archs"] == 3 and "no accuracy table" in p["note"]
    assert rep["settings"]["samples"] == 3


def test_same_seed_same_json(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["complexity", "--space", TINY, *FAST, "--seed", "5", "--json", str(a), "--quiet"]) == 0
    assert main(["complexity", "--space", TINY, *FAST, "--seed", "5", "--json", str(b), "--quiet"]) == 0
    assert json.loads(a.read_text()) == json.loads(b.read_text())


def test_accuracy_table_and_tree(tmp_path):
    torch.manual_seed(0)
    m = build("nb201", C=2, ops=["none", "skip_connect", "nor_conv_3x3"])
    sp = m.space
    g = torch.Generator().manual_seed(0)
    vals = {arch_key(sp, sp.random_arch(g)): float(i) for i in range(8)}
    table = AccuracyTable(sp, vals).save(tmp_path / "acc.csv")
    out = tmp_path / "t.json"
    assert main(["complexity", "--space", TINY, *FAST, "--accuracy-table", str(table), "--json", str(out)]) == 0
    p = json.loads(out.read_text())["spaces"][0]["performance_diversity"]
    assert p["pds"] is not None and p["population"] in ("table", "table-sampled")

    tree = SplitTree(sp)
    tree.split(0, 0, [[0], [1, 2]])
    tree.save(tmp_path / "tree.json")
    out = tmp_path / "leaves.json"
    rc = main(["complexity", "--space", TINY, "--tree", str(tmp_path / "tree.json"), *FAST,
               "--accuracy-table", str(table), "--json", str(out), "--chart", str(tmp_path / "leaves.png")])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert [s["name"] for s in rep["spaces"]] == ["leaf 1", "leaf 2"]
    assert [s["size"] for s in rep["spaces"]] == [243, 486]
    assert (tmp_path / "leaves.png").is_file()
    # a tree alone: no supernet, no jacob_cov
    assert main(["complexity", "--tree", str(tmp_path / "tree.json"), "--json", str(out), "--quiet"]) == 0
    assert all(s["performance_diversity"] is None for s in json.loads(out.read_text())["spaces"])


def test_proxylessnas_paper_preset(tmp_path):
    out = tmp_path / "p.json"
    assert main(["complexity", "--space", "proxylessnas-paper", "--no-proxy", "--json", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["spaces"][0]["size"] == 3 * 6**6 * 7**15


@pytest.mark.parametrize(
    "argv, message",
    [
        (["complexity"], "at least one --space"),
        (["complexity", "--space", "nope"], "unknown space"),
        (["complexity", "--space", "nb201:{bad"], "JSON object"),
        (["complexity", "--space", "nb201:[1]"], "JSON object"),
        (["complexity", "--space", 'nb201:{"wings": 2}'], "bad constructor arguments"),
        (["complexity", "--space", "nb201", "--samples", "1"], "--samples"),
        (["complexity", "--space", "nb201", "--repeats", "0"], "--repeats"),
        (["complexity", "--space", "nb201", "--data", "imagenet"], "--data"),
        (["complexity", "--space", "nb201", "--accuracy-table", "/nonexistent/acc.json"], "no such file"),
        (["complexity", "--space", "nb201", "--space", "darts", "--accuracy-table", "a.json"], "NAME=PATH"),
        (["complexity", "--space", "nb201", "--tree", "/nonexistent/tree.json"], "No such file"),
        (["complexity", "--space", "nb201", "--space", "darts", "--tree", "t.json"], "at most one --space"),
    ],
)
def test_bad_arguments(argv, message, capsys):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "lidsplit complexity: error:" in err and message in err


def test_tree_of_another_space(tmp_path, capsys):
    SplitTree(build("nb201").space).save(tmp_path / "tree.json")
    rc = main(["complexity", "--space", "mobilenet", "--tree", str(tmp_path / "tree.json"), "--no-proxy"])
    assert rc == 2 and "different search space" in capsys.readouterr().err


def test_argparse_errors_and_help(capsys):
    assert main(["complexity", "--scale", "rank"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert "complexity" in capsys.readouterr().out
    assert main(["complexity", "--help"]) == 0
    assert "--accuracy-table" in capsys.readouterr().out


def test_subcommand_registry():
    assert "complexity" in SUBCOMMANDS
    parser = build_parser()
    args = parser.parse_args(["complexity", "--space", "nb201"])
    assert args._command == "complexity" and callable(args._run)


def test_python_dash_m(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "lidsplit", "complexity", "--space", "nb201", "--no-proxy",
                        "--json", str(tmp_path / "m.json"), "--quiet"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "m.json").read_text())["spaces"][0]["size"] == 15625


def test_console_script_declared():
    eps = metadata.entry_points(group="console_scripts")
    (ep,) = [e for e in eps if e.name == "lidsplit"]
    assert ep.value == "lidsplit.cli.main:main"


def test_unwritable_output_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import errno

    import lidsplit.common.io as cio

    def read_only(*_a, **_k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(cio.tempfile, "mkstemp", read_only)
    rc = main(["complexity", "--space", "nb201", "--no-proxy", "--quiet", "--json", str(tmp_path / "s.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot write s.json in" in err and "read-only file system" in err
