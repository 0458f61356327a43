"""Image-level tests of crosscheck.plot: every plot renders for every zoo model, a known
rectangle lands on known pixels, and bad input gets a clear error."""

from __future__ import annotations

import doctest
import importlib
import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from torch import nn  # noqa: E402

import rfarith  # noqa: E402
import rfnumeric  # noqa: E402
from crosscheck import plot, zoo  # noqa: E402
from crosscheck.plot import card, common, grid, heatmap, layers  # noqa: E402

support_module = importlib.import_module("crosscheck.plot.support")  # `plot.support` is the function

ZOO = zoo.names()
SMALL = ["keras_minimal", "keras_detailed", "vit_tiny", "alexnet"]  # the probe is quick on these
HAS_EFFECTIVE = hasattr(rfnumeric, "effective")
needs_effective = pytest.mark.skipif(
    not HAS_EFFECTIVE, reason="rfnumeric.effective (the effective-field probe) does not exist yet"
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def png(fig, dpi: int = 40) -> np.ndarray:
    """Render ``fig`` to PNG in memory and read it back as an RGBA float array."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    image = mpimg.imread(buffer, format="png")
    assert image.ndim == 3 and image.shape[0] > 10 and image.shape[1] > 10
    return image


def first_map(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    """The first feature map after the input: the probe measures it in a fraction of a second."""
    return rfarith.node_names(model, input_shape)[1]


# ---- the test card ---------------------------------------------------------------------------
def test_test_card_shape_range_and_grid():
    image = plot.test_card(50, 70)
    assert image.shape == (50, 70, 3) and image.dtype == np.float64
    assert image.min() >= 0.0 and image.max() <= 1.0
    # grid lines every 16 px are darker than the pixels beside them
    assert (image[20, 32] < image[20, 33]).all() and (image[16, 40] < image[17, 40]).all()
    assert image.std() > 0.1  # not a flat picture


def test_test_card_tiny_and_errors():
    assert plot.test_card(1, 1).shape == (1, 1, 3)
    for bad in [(0, 5), (5, -1), (2.5, 3), (True, 3)]:
        with pytest.raises(ValueError, match="test_card"):
            plot.test_card(*bad)


# ---- every zoo model -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ZOO)
def test_rf_grid_renders_every_zoo_model(name):
    rep = rfarith.analyze(zoo.build(name), zoo.input_shape(name))
    fig = plot.rf_grid(rep)
    png(fig)
    assert fig.axes[0].get_title().startswith(common.field_title(rep[common.default_node(rep)]))


@pytest.mark.parametrize("name", ZOO)
def test_growth_renders_every_zoo_model(name):
    fig = plot.growth(zoo.build(name), zoo.input_shape(name), numeric=False)
    png(fig)
    assert [ax.get_ylabel() for ax in fig.axes] == ["RF size r (pixels)", "jump j (pixels)"]


@pytest.mark.parametrize("name", ZOO)
def test_probe_heatmap_renders_every_zoo_model(name):
    """The structural panel at the first feature map (the probe is quick there)."""
    model, shape = zoo.build(name), zoo.input_shape(name)
    fig = plot.probe_heatmap(model, shape, node=first_map(model, shape), effective=False)
    png(fig)
    assert "analytic (cyan)" in fig.axes[0].get_title()


@needs_effective
@pytest.mark.parametrize("name", ZOO)
def test_probe_heatmap_with_effective_renders_every_zoo_model(name):
    model, shape = zoo.build(name), zoo.input_shape(name)
    fig = plot.probe_heatmap(model, shape, node=first_map(model, shape))
    png(fig)
    assert any(ax.get_title().startswith("effective") for ax in fig.axes)


@needs_effective
@pytest.mark.parametrize("name", ZOO)
def test_erf_profile_renders_every_zoo_model(name):
    model, shape = zoo.build(name), zoo.input_shape(name)
    png(plot.erf_profile(model, shape, node=first_map(model, shape)))


# ---- numeric variants on small models --------------------------------------------------------
@pytest.mark.parametrize("name", SMALL)
def test_rf_grid_numeric_agrees_on_small_models(name):
    fig = plot.rf_grid(zoo.build(name), zoo.input_shape(name))
    png(fig)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()[:3]]
    assert all(label.endswith("probe: same") for label in labels), labels


def test_rf_grid_numeric_names_a_grown_probe_input():
    """AlexNet's pool5 field (195 px) and two neighbours do not fit 227 px: the probe runs
    larger and the title says so."""
    fig = plot.rf_grid(zoo.build("alexnet"), zoo.input_shape("alexnet"), node="pool5")
    assert "probe ran at 454×454 (cut to the input)" in fig.axes[0].get_title()


@pytest.mark.parametrize("name", ["keras_minimal", "alexnet"])
def test_growth_numeric_markers(name):
    fig = plot.growth(zoo.build(name), zoo.input_shape(name))
    png(fig)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == ["analytic (each map)", "largest so far (graph order)", "numeric"]  # no 'differs' marks


def test_growth_draws_each_axis_when_they_differ():
    """Kernel 3x5, stride 1x2: r and j differ between h and w, so each axis gets its line."""
    net = nn.Sequential(nn.Conv2d(1, 2, (3, 5), stride=(1, 2)), nn.Conv2d(2, 2, 3))
    fig = plot.growth(net, (1, 1, 24, 24))
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == [f"{what}{axis}{how}" for axis in (" h", " w") for what, how in (("analytic", " (each map)"), ("largest so far", " (graph order)"), ("numeric", ""))]
    r_w = [line for line in fig.axes[0].get_lines() if line.get_label() == "analytic w (each map)"][0]
    assert r_w.get_ydata().tolist() == [1, 5, 9]  # 5, then 5 + 2*(3-1)


def test_rf_grid_of_an_output_alias_row_probes_its_node():
    """A multi-output model's output rows (``output[p5]``) are probed at the node behind them."""
    model, shape = zoo.build("fpn"), zoo.input_shape("fpn")
    rep = rfarith.analyze(model, shape)
    assert common.default_node(rep) == rep.outputs["p2"].node
    assert common.probe_node(rep, "output[p5]") == rep.outputs["p5"].node


# ---- 1-D and 3-D inputs ----------------------------------------------------------------------
NET_1D = nn.Sequential(nn.Conv1d(2, 4, 5, stride=2, padding=2), nn.ReLU(), nn.Conv1d(4, 4, 3, dilation=2))
NET_3D = nn.Sequential(nn.Conv3d(1, 2, 3, stride=2, padding=1), nn.ReLU(), nn.Conv3d(2, 2, 3))


@pytest.mark.parametrize(("net", "shape"), [(NET_1D, (1, 2, 40)), (NET_3D, (1, 1, 12, 20, 20))], ids=["1d", "3d"])
def test_other_dimensions_render(net, shape):
    fig = plot.rf_grid(net, shape)
    png(fig)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()[:3]]
    assert all(label.endswith("probe: same") for label in labels), labels
    png(plot.probe_heatmap(net, shape, effective=False))
    png(plot.growth(net, shape))


def analytic_rectangles(ax) -> list[tuple[float, float, float, float]]:
    """(x, y, width, height) of the cyan analytic rectangles drawn on a heat-map panel."""
    cyan = to_rgb(heatmap.ANALYTIC_COLOUR)
    return [
        (*p.get_xy(), p.get_width(), p.get_height())
        for p in ax.patches
        if isinstance(p, Rectangle) and tuple(p.get_edgecolor()[:3]) == pytest.approx(cyan)
    ]


@pytest.mark.parametrize(
    ("net", "shape", "unit", "box"),
    [
        # conv 5x5 stride 2 padding 2, 32x32: unit (3, 9) sees rows 4..8, columns 16..20
        (nn.Conv2d(1, 1, 5, stride=2, padding=2), (1, 1, 32, 32), (3, 9), (16, 4, 5, 5)),
        # 3-D: the slice shows h and w; unit (2, 1, 4) of a 3x3x3 conv sees h 1..3, w 4..6
        (nn.Conv3d(1, 1, 3), (1, 1, 8, 10, 10), (2, 1, 4), (4, 1, 3, 3)),
    ],
    ids=["2d", "3d"],
)
def test_probe_heatmap_overlays_the_unit_bounds(net, shape, unit, box):
    fig = plot.probe_heatmap(net, shape, unit=unit, effective=False)
    assert analytic_rectangles(fig.axes[0]) == [box, box]  # unclipped (dashed) and real (solid)


def test_3d_grid_names_its_depth_slice():
    fig = plot.rf_grid(NET_3D, (1, 1, 12, 20, 20), numeric=False)
    assert "depth slice d = 6" in fig.axes[0].get_title()


def test_1d_grid_uses_a_signal_as_image():
    signal = np.sin(np.linspace(0, 6, 40))
    fig = plot.rf_grid(NET_1D, (1, 2, 40), image=signal, numeric=False)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["input", "first", "centre", "last"]


# ---- a known rectangle at known pixels -------------------------------------------------------
def colour_mask(image: np.ndarray, colour: str, tolerance: float = 0.04) -> np.ndarray:
    """Pixels of the rendered RGBA ``image`` within ``tolerance`` of ``colour`` on every channel."""
    return (np.abs(image[..., :3] - np.array(to_rgb(colour))) <= tolerance).all(axis=-1)


def test_rf_grid_centre_rectangle_pixel_position():
    """One conv 5x5, stride 2, no padding, on a 32x32 input: n = 14, start = 2.5, so unit m
    sees pixels 2m .. 2m+4. The centre unit (7, 7) sees rows and columns 14..18, i.e. the
    square [14, 19) x [14, 19) in data coordinates (pixel i spans [i, i+1)).

    Every field lies inside the input, so the view is the input plus a margin of
    0.5 + 0.02 * 32 = 1.14 pixels: x from -1.14 to 33.14, y from 33.14 (bottom) to -1.14
    (top). The axes fill a 4 x 4 inch figure at 100 dpi, so 34.28 data pixels span 400 image
    pixels: x = 14 lands at column (14 + 1.14) / 34.28 * 400 = 176.7 and x = 19 at 235.0;
    y = 14 at row 176.7 and y = 19 at 235.0. The centre unit's colour (blue) must lie on
    those lines, spanning exactly between them, and nowhere else along them.
    """
    fig = plt.figure(figsize=(4, 4), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    net = nn.Conv2d(1, 1, 5, stride=2)
    plot.rf_grid(net, (1, 1, 32, 32), image=np.full((32, 32), 0.5), numeric=False, ax=ax)
    assert ax.get_xlim() == pytest.approx((-1.14, 33.14))
    assert ax.get_ylim() == pytest.approx((33.14, -1.14))
    image = png(fig, dpi=100)
    assert image.shape[:2] == (400, 400)

    scale = 400 / 34.28
    first, last = (14 + 1.14) * scale, (19 + 1.14) * scale  # 176.7, 235.0
    blue = colour_mask(image, grid.UNIT_COLOURS[1])
    for line in (blue[round(first)], blue[:, round(first)], blue[round(last)], blue[:, round(last)]):
        hits = np.flatnonzero(line)
        assert hits.size, "the centre rectangle's edge is not where expected"
        assert abs(hits.min() - first) <= 2.5 and abs(hits.max() - last) <= 2.5, (hits.min(), hits.max())
        assert hits.size == hits.max() - hits.min() + 1  # one unbroken edge, nothing else on the line
    # the rows between the edges show blue only at the two vertical edges
    middle = np.flatnonzero(blue[round((first + last) / 2)])
    assert set(middle) <= set(range(round(first) - 3, round(first) + 3)) | set(range(round(last) - 3, round(last) + 3))
    # and no blue far from the rectangle (top-left and bottom-right fields use other colours)
    assert not blue[: round(first) - 3].any() and not blue[round(last) + 3 :].any()
    # the top-left unit (rows and columns 0..4) is red: its top edge on row 1.14 * scale
    red = colour_mask(image, grid.UNIT_COLOURS[0])
    hits = np.flatnonzero(red[round(1.14 * scale)])
    assert abs(hits.min() - 1.14 * scale) <= 2.5 and abs(hits.max() - 6.14 * scale) <= 2.5


# ---- helpers ---------------------------------------------------------------------------------
def test_default_node_skips_single_unit_outputs():
    rep = rfarith.analyze(zoo.build("resnet18"), zoo.input_shape("resnet18"))
    assert rep[common.default_node(rep)].n == (7, 7)
    rep = rfarith.analyze(zoo.build("keras_minimal"), zoo.input_shape("keras_minimal"))
    assert common.default_node(rep) == rep.output.node


def test_probe_shape_doubles_until_the_field_fits():
    rep = rfarith.analyze(zoo.build("alexnet"), (1, 3, 227, 227))
    assert common.probe_shape(rep.input_shape, rep["pool5"]) == (1, 3, 454, 454)  # 195 + 4*32 + 2 > 227
    assert common.probe_shape(rep.input_shape, rep["conv1"]) == (1, 3, 227, 227)


def test_as_image_layouts():
    hw = np.random.default_rng(0).random((6, 8))
    assert common.as_image(hw, (6, 8)).shape == (6, 8)
    assert common.as_image(np.zeros((3, 6, 8)), (6, 8)).shape == (6, 8, 3)
    assert common.as_image(torch.zeros(1, 3, 6, 8), (6, 8)).shape == (6, 8, 3)
    assert common.as_image(np.full((6, 8, 3), 255, dtype=np.uint8), (6, 8)).max() == 1.0
    assert common.as_image(np.arange(48.0).reshape(6, 8), (6, 8)).max() == 1.0  # rescaled
    assert common.as_image(None, (4, 6, 8)).shape == (4, 6, 8, 3)
    assert common.as_image(None, (40,)).shape == (40, 3)


def test_mass_profile_helpers():
    mass = np.array([0.0, 1.0, 4.0, 1.0, 0.0])
    heat = np.outer(mass, np.ones(3))
    assert heatmap.marginal(heat, 0).tolist() == (3 * mass).tolist()
    distance, cumulative = heatmap.cumulative_mass(mass, 2.5)
    assert distance.tolist() == [0.0, 1.0, 1.0, 2.0, 2.0]
    assert cumulative[-1] == pytest.approx(1.0)
    assert heatmap.mass_radius(mass, 2.5, 0.5) == 0.0 and heatmap.mass_radius(mass, 2.5, 0.9) == 1.0
    with pytest.raises(ValueError, match="no mass"):
        heatmap.cumulative_mass(np.zeros(3), 1.5)


def test_growth_helpers():
    assert layers.tick_positions(3) == [0, 1, 2]
    assert len(layers.tick_positions(516)) <= layers.MAX_LABELS + 1
    same = np.array([[1.0, 1.0], [np.nan, np.nan]])
    assert layers.same_on_every_axis(same) and not layers.same_on_every_axis(np.array([[1.0, 2.0]]))


def test_docstring_examples():
    for module in (card, common, grid, heatmap, layers, support_module, plot):
        failed, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert failed == 0, module.__name__


# ---- errors ----------------------------------------------------------------------------------
NET = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2))
SHAPE = (1, 3, 16, 16)


def test_rf_grid_errors():
    rep = rfarith.analyze(NET, SHAPE)
    with pytest.raises(ValueError, match="input_shape is required"):
        plot.rf_grid(NET)
    with pytest.raises(TypeError, match="nn.Module or an rfarith.Report"):
        plot.rf_grid("alexnet", SHAPE)
    with pytest.raises(ValueError, match="Report is analytic only"):
        plot.rf_grid(rep, numeric=True)
    with pytest.raises(ValueError, match="differs from the report's input shape"):
        plot.rf_grid(rep, (1, 3, 32, 32))
    with pytest.raises(rfarith.UnknownNode, match="conv9"):
        plot.rf_grid(NET, SHAPE, node="conv9", numeric=False)
    with pytest.raises(TypeError, match="node must be"):
        plot.rf_grid(NET, SHAPE, node=2, numeric=False)
    with pytest.raises(ValueError, match="image has shape"):
        plot.rf_grid(NET, SHAPE, image=np.zeros((8, 8)), numeric=False)
    with pytest.raises(ValueError, match="NaN"):
        plot.rf_grid(NET, SHAPE, image=np.full((16, 16), np.nan), numeric=False)
    with pytest.raises(TypeError, match="ax must be"):
        plot.rf_grid(NET, SHAPE, numeric=False, ax="left")


def test_rf_grid_from_a_report_is_analytic():
    fig = plot.rf_grid(rfarith.analyze(NET, SHAPE))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert not any("probe" in label for label in labels)


def test_single_unit_maps_are_refused_by_the_grid():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1))
    with pytest.raises(ValueError, match="single unit"):
        plot.rf_grid(net, SHAPE, node="1", numeric=False)
    with pytest.raises(ValueError, match="more than one unit"):
        plot.rf_grid(nn.AdaptiveAvgPool2d(1), SHAPE, numeric=False)


def test_size_dependent_fields_are_refused_before_probing():
    """Adaptive pooling: at 16x16 the map's field (r 10) and two neighbours do not fit, and on
    the 32x32 input the probe would need, the pooling window and so the field are larger."""
    net = nn.Sequential(nn.Conv2d(1, 1, 9), nn.AdaptiveAvgPool2d(4))
    with pytest.raises(ValueError, match="changes with the input size"):
        plot.rf_grid(net, (1, 1, 16, 16), node="1")
    with pytest.raises(ValueError, match="changes with the input size") as refused:
        plot.probe_heatmap(net, (1, 1, 16, 16), node="1", effective=False)
    assert "CLI: --node NAME" in str(refused.value) and "CLI: --no-numeric" in str(refused.value)  # a way out from either side
    png(plot.rf_grid(net, (1, 1, 16, 16), numeric=False))


def test_the_default_map_of_a_probing_plot_is_one_the_probe_can_measure():
    """A torchvision VGG or AlexNet ends its features with adaptive pooling, the default map
    (the deepest with several units): its field does not fit 224x224 and changes with the
    input size. With no node named, the probing plots draw the deepest map before it that the
    probe can measure (`rfcheck plot vgg16` used to stop with the error above); the analytic
    grid still draws the default map."""
    net = nn.Sequential(nn.Conv2d(1, 1, 9), nn.AdaptiveAvgPool2d(4))
    assert plot.rf_grid(net, (1, 1, 16, 16)).axes[0].get_title().startswith("0: r 9")
    assert plot.rf_grid(net, (1, 1, 16, 16), numeric=False).axes[0].get_title().startswith("1: ")
    assert "'0' unit" in plot.probe_heatmap(net, (1, 1, 16, 16), effective=False).axes[0].get_title()


def test_growth_and_heatmap_errors():
    with pytest.raises(ValueError, match="Report is analytic only"):
        plot.growth(rfarith.analyze(NET, SHAPE), numeric=True)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        plot.probe_heatmap("net", SHAPE)
    with pytest.raises(rfarith.UnknownNode):
        plot.probe_heatmap(NET, SHAPE, node="nope", effective=False)
    with pytest.raises(rfarith.UnknownNode):
        plot.erf_profile(NET, SHAPE, node="nope")
    with pytest.raises(IndexError, match="outside the map"):
        plot.probe_heatmap(NET, SHAPE, unit=(9, 0), effective=False)


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, the probe still measures it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x):
        return self.conv(x) if x.sum() > 0 else self.conv(-x)


def test_probe_heatmap_of_a_model_fx_cannot_trace():
    """The plots analyse as ``rfcheck report`` does (crosscheck.hybrid): the probe measures the
    untraceable model, and the heat map's bounds say they come from it."""
    fig = plot.probe_heatmap(Untraceable(), (1, 1, 12, 12), effective=False)
    png(fig)
    assert "report, measured by the probe (cyan): h 5–7, w 5–7" in fig.axes[0].get_title()
