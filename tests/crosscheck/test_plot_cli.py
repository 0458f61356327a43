"""``rfcheck plot`` as users call it (``crosscheck.cli.main``), and the plot functions behind
each of its options: the path written, --node / --nodes, models only the hybrid report can
analyse, --kind support, --image, and what the heat map, growth and grid plots show."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from torch import nn  # noqa: E402

import rfarith  # noqa: E402
from crosscheck import cli, plot, zoo  # noqa: E402
from crosscheck.plot import grid, layers  # noqa: E402
from rfarith.walk import Row  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

MODELS = '''
import torch
from torch import nn


class Plus(nn.Module):
    """A 1x5 conv branch plus a 5x1 conv branch: a plus-shaped field."""

    def __init__(self):
        super().__init__()
        self.row = nn.Conv2d(1, 2, (1, 5), padding=(0, 2))
        self.column = nn.Conv2d(1, 2, (5, 1), padding=(2, 0))

    def forward(self, x):
        return self.row(x) + self.column(x)


class Gate(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def forward(self, x):
        return x if x.sum() > 0 else -x


class Whole(nn.Module):
    """The root's own forward is untraceable: every module is measured."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3)
        self.b = nn.Conv2d(2, 2, 3, stride=2)

    def forward(self, x):
        x = self.a(x)
        return self.b(x) if x.sum() > 0 else self.b(-x)


def plus():
    return Plus()


def gated():
    return nn.Sequential(nn.Conv2d(1, 2, 3), Gate(), nn.Conv2d(2, 2, 3, stride=2))


def whole():
    return Whole()


def wide():
    return nn.Sequential(nn.Conv2d(1, 1, 9, padding=4), nn.Conv2d(1, 1, 9, padding=4), nn.Conv2d(1, 1, 9, padding=4))
'''


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def models(tmp_path):
    path = tmp_path / "plotnets.py"
    path.write_text(MODELS)
    return path


def rfcheck(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def usage_error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(argv))
    assert exit_info.value.code == 2
    return capsys.readouterr().err


# ---- 1. the path written ---------------------------------------------------------------------
def test_out_without_extension_prints_the_file_written(tmp_path, capsys):
    code, out, err = rfcheck(capsys, "plot", "keras_minimal", "--out", str(tmp_path / "rf"), "--no-numeric")
    assert code == 0, err
    written = tmp_path / "rf.png"
    assert out.splitlines()[0] == f"wrote {written}"
    assert written.read_bytes()[:8] == PNG_MAGIC and not (tmp_path / "rf").exists()


def test_out_with_extension_is_kept_and_unknown_ones_refused(tmp_path, capsys):
    code, out, _ = rfcheck(capsys, "plot", "keras_minimal", "--out", str(tmp_path / "rf.svg"), "--no-numeric")
    assert code == 0 and out.splitlines()[0] == f"wrote {tmp_path / 'rf.svg'}"
    assert (tmp_path / "rf.svg").read_text().lstrip().startswith("<?xml")
    code, out, err = rfcheck(capsys, "plot", "keras_minimal", "--out", str(tmp_path / "rf.bogus"), "--no-numeric")
    assert code == 2 and "'.bogus'" in err and ".png" in err and not out


# ---- 2. --node, not --nodes ------------------------------------------------------------------
def test_plot_refuses_nodes_naming_node(tmp_path, capsys):
    err = usage_error(capsys, "plot", "keras_minimal", "--out", str(tmp_path / "rf.png"), "--nodes", "conv1,conv2")
    assert "--node NAME" in err and "one feature map" in err
    assert not (tmp_path / "rf.png").exists()


def test_plot_node_picks_the_map(tmp_path, capsys):
    code, _, err = rfcheck(capsys, "plot", "alexnet", "--node", "conv2", "--out", str(tmp_path / "a.png"), "--no-numeric")
    assert code == 0, err
    with pytest.raises(SystemExit):
        cli.main(["plot", "--help"])
    shown = capsys.readouterr().out
    assert "--node NODE" in shown and "support" in shown and "--image" in shown
    assert "refused: a plot draws one feature map; name it with --node" in " ".join(shown.split())


# ---- 3. models only the hybrid report analyses -----------------------------------------------
def test_plot_draws_models_report_can_analyse(models, tmp_path, capsys):
    model = f"{models}:gated"
    with pytest.raises(rfarith.RFError):  # the plain analysis fails on the untraceable module
        rfarith.analyze(_load(models, "gated"), (1, 1, 24, 24))
    assert rfcheck(capsys, "report", model, "--input", "1x24x24")[0] == 0
    for kind in ("grid", "growth", "support", "heatmap"):
        out = tmp_path / f"{kind}.png"
        code, printed, err = rfcheck(capsys, "plot", model, "--input", "1x24x24", "--kind", kind, "--out", str(out))
        assert code == 0, (kind, err, printed)
        assert out.read_bytes()[:8] == PNG_MAGIC


def test_plot_of_a_model_fx_cannot_trace_at_all(models, tmp_path, capsys):
    code, printed, err = rfcheck(capsys, "plot", f"{models}:whole", "--input", "1x24x24", "--out", str(tmp_path / "w.png"))
    assert code == 0, (err, printed)
    fig = plot.rf_grid(_load(models, "whole"), (1, 1, 24, 24))
    assert fig.rfcheck_problems == []  # the probe agrees with the measured report


def _load(models, factory: str) -> nn.Module:
    from crosscheck.loading import load_model

    return load_model(f"{models}:{factory}").model


def test_picking_a_node_without_a_field_is_a_clear_error():
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3))
    good = rfarith.analyze(net, (1, 1, 12, 12))
    rows = [good.rows[0], Row("0", "conv2d", good.rows[1].shape, None, "probe", "the probe saw no gradient"), *good.rows[2:]]
    rep = rfarith.Report(rows, {"output": rows[-1].name}, good.input_shape, "partial")
    assert rep.missing == {"0": "the probe saw no gradient"}
    with pytest.raises(rfarith.NotComputed, match="'0' could not be computed: the probe saw no gradient.*pick a node"):
        plot.rf_grid(rep, node="0")
    with pytest.raises(rfarith.NotComputed, match="nothing to draw"):
        plot.support(rep, node="0")
    plot.rf_grid(rep)  # the default node skips it
    fig = plot.growth(rep)  # its row is a gap, and `rfcheck plot` exits 1 for it
    assert fig.rfcheck_incomplete == ["'0' not computed: the probe saw no gradient"]
    assert "1 map(s) not computed (gaps): 0" in fig.axes[0].get_title()


# ---- 4. the exact support --------------------------------------------------------------------
def test_support_of_a_plus_shaped_field(models):
    fig = plot.support(_load(models, "plus"), (1, 1, 16, 16))
    title = fig.axes[0].get_title()
    assert "centre (8, 8): 9 pixels seen, 16 of the 25 in its box h 6–10, w 6–10 unseen" in title
    image = fig.axes[0].get_images()[0].get_array()
    coloured = np.asarray(image)[..., :3].std(axis=-1) > 0.05  # the filled pixels
    expected = np.zeros((16, 16), dtype=bool)
    expected[8, 6:11] = expected[6:11, 8] = True
    assert (coloured == expected).all()


def test_support_corners_and_cli(models, tmp_path, capsys):
    fig = plot.support(_load(models, "plus"), (1, 1, 16, 16), corners=True)
    lines = fig.axes[0].get_title().splitlines()
    assert lines[1].startswith("top-left (0, 0): 5 pixels seen, 4 of the 9 in its box h 0–2, w 0–2 unseen")
    assert lines[3].startswith("bottom-right (15, 15)")
    out = tmp_path / "s.png"
    code, printed, err = rfcheck(capsys, "plot", f"{models}:plus", "--input", "1x16x16", "--kind", "support", "--corners", "--out", str(out))
    assert code == 0, err
    assert out.read_bytes()[:8] == PNG_MAGIC and printed.startswith(f"wrote {out}")
    code, _, err = rfcheck(capsys, "plot", "keras_minimal", "--corners", "--out", str(tmp_path / "x.png"))
    assert code == 2 and "--kind support" in err


def test_support_of_inception_mixed_7c_counts_its_cut_corners():
    from crosscheck import zoo
    from crosscheck.commands import resolved

    model, shape = zoo.build("inception_v3"), (1, 3, 1400, 1400)  # the whole 1311-pixel box inside
    fig = plot.support(model, shape, node=resolved(model, shape, ["Mixed_7c"])[0])
    centre = fig.axes[0].get_title().splitlines()[1]
    assert "12,288 of the 1,718,721 in its box h 54–1364, w 54–1364 unseen" in centre  # four cut corners


def test_support_dilation_holes_1d_and_3d():
    fig = plot.support(nn.Conv1d(1, 1, 3, dilation=3), (1, 1, 20))
    assert "3 pixels seen, 4 of the 7 in its box l" in fig.axes[0].get_title()
    fig = plot.support(nn.Conv3d(1, 1, 3), (1, 1, 6, 8, 8))
    assert "0 of the 27" in fig.axes[0].get_title() and "depth slice d = " in fig.axes[0].get_title()


# ---- 5. the user's own image -----------------------------------------------------------------
def test_plot_grid_on_a_png_and_a_jpeg(tmp_path, capsys):
    picture = np.zeros((30, 50, 3), dtype=np.uint8)
    picture[:, 25:] = 255  # right half white
    mpimg.imsave(tmp_path / "photo.png", picture)
    shown = plot.read_image(tmp_path / "photo.png", (1, 3, 60, 40))
    assert shown.shape == (60, 40, 3) and shown[:, :20].max() == 0 and shown[:, 20:].min() == 1
    pytest.importorskip("PIL")
    mpimg.imsave(tmp_path / "photo.jpg", picture)
    assert plot.read_image(tmp_path / "photo.jpg", (1, 3, 60, 40)).shape == (60, 40, 3)
    out = tmp_path / "grid.png"
    code, printed, err = rfcheck(capsys, "plot", "keras_minimal", "--image", str(tmp_path / "photo.jpg"), "--out", str(out))
    assert code == 0, (err, printed)
    fig = plot.rf_grid(rfarith.analyze(nn.Conv2d(3, 1, 3), (1, 3, 60, 40)), image=shown)
    drawn = np.asarray(fig.axes[0].get_images()[0].get_array())
    assert drawn.shape[:2] == (60, 40) and drawn[:, :20].max() == 0


def test_plot_image_errors(tmp_path, capsys):
    out = str(tmp_path / "x.png")
    code, _, err = rfcheck(capsys, "plot", "keras_minimal", "--image", str(tmp_path / "none.png"), "--out", out)
    assert code == 2 and "does not exist" in err
    (tmp_path / "bad.png").write_bytes(b"not a picture")
    code, _, err = rfcheck(capsys, "plot", "keras_minimal", "--image", str(tmp_path / "bad.png"), "--out", out)
    assert code == 2 and "cannot be read" in err
    code, _, err = rfcheck(capsys, "plot", "keras_minimal", "--kind", "growth", "--image", str(tmp_path / "bad.png"), "--out", out)
    assert code == 2 and "--kind grid only" in err
    with pytest.raises(ValueError, match="1-D input"):
        plot.read_image(tmp_path / "bad.png", (1, 1, 64))


def test_non_png_without_pillow_names_png(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pillow(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("no PIL")
        return real_import(name, *args, **kwargs)

    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    monkeypatch.setattr(builtins, "__import__", no_pillow)
    with pytest.raises(ValueError, match="only PNG"):
        plot.read_image(tmp_path / "photo.jpg", (1, 3, 32, 32))


# ---- 6. the heat map -------------------------------------------------------------------------
def test_heatmap_axes_are_labelled():
    fig = plot.probe_heatmap(nn.Conv2d(1, 1, 3), (1, 1, 12, 12), effective=False)
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("w (pixel index)", "h (pixel index)")
    fig = plot.probe_heatmap(nn.Conv1d(1, 1, 3), (1, 1, 20), effective=False)
    assert fig.axes[0].get_xlabel() == "l (pixel index)"


def _depth_slices(fig) -> list[str]:
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 2
    return [line for t in titles for line in t.replace(", ", "\n").splitlines() if line.startswith("depth slice")]


def test_3d_heatmap_panels_share_their_depth_slice():
    """At 11x12x12 the field (r 5) fits with room: both panels run on that input."""
    net = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv3d(2, 2, 3, padding=1))
    slices = _depth_slices(plot.probe_heatmap(net, (1, 1, 11, 12, 12)))
    assert len(set(slices)) == 1 and slices[0].endswith("(the same in both panels)")


def test_3d_heatmap_panels_on_different_inputs_each_name_their_slice():
    """At 9x10x10 the structural panel runs on a doubled input (room for the unit's
    neighbours), the effective one on the user's, which holds the centre unit's field."""
    net = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv3d(2, 2, 3, padding=1))
    fig = plot.probe_heatmap(net, (1, 1, 9, 10, 10))
    slices = _depth_slices(fig)
    assert slices == ["depth slice d = 9", "depth slice d = 4"]
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "input 18×20×20" in titles[0] and "input 9×10×10" in titles[1]


# ---- 7. the growth plot ----------------------------------------------------------------------
class Branches(nn.Module):
    """A deep branch then a shallow one, added: graph order visits the shallow one last."""

    def __init__(self):
        super().__init__()
        self.deep = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(4)])
        self.shallow = nn.Conv2d(1, 1, 1)

    def forward(self, x):
        return self.deep(x) + self.shallow(x)


def test_growth_has_no_line_dipping_between_branches():
    fig = plot.growth(Branches(), (1, 1, 32, 32), numeric=False)
    r_panel = fig.axes[0]
    lines = [line for line in r_panel.get_lines() if line.get_linestyle() not in ("None", "")]
    assert lines and all(np.all(np.diff(np.asarray(line.get_ydata(), float)) >= 0) for line in lines)
    dots = [line for line in r_panel.get_lines() if line.get_linestyle() in ("None", "")]
    assert any(9.0 in np.asarray(d.get_ydata()) and 1.0 in np.asarray(d.get_ydata())[1:] for d in dots)
    labels = [t.get_text() for t in r_panel.get_legend().get_texts()]
    assert any("largest so far" in label for label in labels)


def test_growth_labels_first_last_and_stage_changes():
    ticks = layers.tick_positions(200, 40, changes=[17, 18, 90, 150])
    assert {0, 199, 17, 18, 90, 150} <= set(ticks) and len(ticks) <= 40
    assert layers.tick_positions(30) == list(range(30))  # every map named when they fit
    many = layers.tick_positions(500, 40, changes=list(range(1, 499, 5)))
    assert many[0] == 0 and many[-1] == 499 and len(many) <= 40
    net = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1, stride=2 if k in (30, 45) else 1) for k in range(60)])
    fig = plot.growth(net, (1, 1, 64, 64), numeric=False)
    names = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert names[0] == "input" and names[-1] == "59" and {"30", "45"} <= set(names) and len(names) <= 40


# ---- 8. fields larger than the input ---------------------------------------------------------
def test_grid_view_shows_whole_fields_larger_than_the_input(models):
    fig = plot.rf_grid(_load(models, "wide"), (1, 1, 16, 16), numeric=False)
    ax = fig.axes[0]
    left, right = ax.get_xlim()
    assert left <= -12 and right >= 28  # the corner units' 25-pixel fields, unclipped
    assert "view capped" not in ax.get_title()
    dashed = [p for p in ax.patches if p.get_linestyle() == "--"]
    for patch in dashed:
        x0, x1 = patch.get_x(), patch.get_x() + patch.get_width()
        assert left <= x0 and x1 <= right


def test_grid_view_is_capped_and_says_so():
    net = nn.Sequential(*[nn.Conv2d(1, 1, 9, padding=4) for _ in range(8)])  # r 65 on 16 pixels
    fig = plot.rf_grid(net, (1, 1, 16, 16), numeric=False)
    ax = fig.axes[0]
    assert "view capped" in ax.get_title()
    assert ax.get_xlim()[0] >= -grid.VIEW_BEYOND * 16 - 2


def test_plot_exit_status_still_reports_disagreements(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    def fake(*args, **kwargs):
        fig = Figure()
        fig.rfcheck_problems = ["centre (1, 1): analytic h 0–2, probe h 0–3"]
        return fig

    monkeypatch.setattr(plot, "rf_grid", fake)
    code, printed, _ = rfcheck(capsys, "plot", "keras_minimal", "--out", str(tmp_path / "d"))
    assert code == 1 and "DISAGREE: centre (1, 1)" in printed and (tmp_path / "d.png").exists()


def test_plot_exit_status_reports_gaps(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    def fake(*args, **kwargs):
        fig = Figure()
        fig.rfcheck_incomplete = ["'gate' not computed: the probe saw no gradient"]
        return fig

    monkeypatch.setattr(plot, "growth", fake)
    code, printed, _ = rfcheck(capsys, "plot", "keras_minimal", "--kind", "growth", "--out", str(tmp_path / "g.png"))
    assert code == 1 and "INCOMPLETE: 'gate' not computed" in printed


def test_growth_of_an_agreeing_model_has_no_problems():
    fig = plot.growth(nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 3)), (1, 1, 16, 16))
    assert fig.rfcheck_problems == [] and fig.rfcheck_incomplete == []



# ---- 8. the effective field's memory budget --------------------------------------------------
def test_heatmap_past_the_memory_budget_draws_the_structural_panel_and_says_why(models, tmp_path, capsys):
    """``wide`` (r 25) at 16x16: the probe grows the input, and a real-weights pass there is
    estimated above a 1 kB budget: the structural panel is drawn, the effective one says why
    not, and the command exits 1 naming the option that raises the budget."""
    out = tmp_path / "heat.png"
    argv = ("plot", f"{models}:wide", "--input", "1x16x16", "--kind", "heatmap", "--out", str(out))
    code, printed, err = rfcheck(capsys, *argv, "--max-memory-gb", "0.000001")
    assert code == 1, err
    assert out.read_bytes()[:8] == PNG_MAGIC
    incomplete = [line for line in printed.splitlines() if line.startswith("INCOMPLETE: the effective heat map")]
    assert len(incomplete) == 1 and "--max-memory-gb" in incomplete[0] and "memory budget" in incomplete[0]
    fig = plot.probe_heatmap(_load(models, "wide"), (1, 1, 16, 16), memory_budget=1000)
    assert fig.axes[1].get_title() == "effective: not measured" and "memory budget" in fig.axes[1].texts[0].get_text()
    assert rfcheck(capsys, *argv)[0] == 0  # within the default budget: both panels


def test_erf_past_the_memory_budget_is_refused_with_the_cli_way_out(models, capsys):
    code, printed, err = rfcheck(capsys, "erf", f"{models}:wide", "--input", "1x16x16", "--samples", "2", "--max-memory-gb", "1e-6")
    assert code != 0 and not printed
    assert "memory budget" in err and "--max-memory-gb" in err


@pytest.mark.parametrize("value", ["0", "-1", "lots", "inf"])
def test_max_memory_gb_must_be_a_positive_number(tmp_path, capsys, value):
    err = usage_error(capsys, "erf", "keras_minimal", "--max-memory-gb", value)
    assert f"'{value}' is not a positive number of gigabytes" in err


def test_max_memory_gb_is_refused_where_no_effective_field_is_drawn(tmp_path, capsys):
    code, _, err = rfcheck(capsys, "plot", "keras_minimal", "--kind", "grid", "--out", str(tmp_path / "g.png"), "--max-memory-gb", "2")
    assert code == 2 and "--max-memory-gb" in err and "--kind heatmap and erf" in err


def test_a_model_that_rejects_the_doubled_input_is_probed_at_the_users(tmp_path, capsys):
    """The zoo's Swin-style net partitions a 28x28 token grid: it accepts 112x112 only, while
    its deepest map's field (r 168) would want a larger input. The plots probe at 112x112 and
    draw what fits (they used to stop with a shape error for an input the user never gave)."""
    for kind in ("grid", "heatmap"):
        code, printed, err = rfcheck(capsys, "plot", "swin_tiny_style", "--kind", kind, "--out", str(tmp_path / f"{kind}.png"))
        assert code == 0, (kind, err, printed)
    fig = plot.probe_heatmap(zoo.build("swin_tiny_style"), (1, 3, 112, 112), effective=False)
    assert "input 112×112" in fig.axes[0].get_title()
