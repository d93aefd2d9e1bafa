"""Reading dlib's serialisation of the MMOD CNN face detector
(`mmod_human_face_detector.dat`, the `net_type` of dlib's Python binding,
tools/python/src/cnn_face_detector.cpp) without dlib.

The network, outermost first (dlib 20.0.1):

    loss_mmod<con<1,9,9,1,1, rcon5<rcon5<rcon5<downsampler<
        input_rgb_image_pyramid<pyramid_down<6>>>>>>>>
    downsampler = relu<affine<con5d<32, relu<affine<con5d<32, relu<affine<con5d<16, SUB>>>>>>>>>
    rcon5 = relu<affine<con5<45, SUB>>>;  con5d = con<N,5,5,2,2>;  con5 = con<N,5,5,1,1>

The layers in between are read by dlib_format's walker (same byte format, same checks);
this module adds what only this network has: the pyramid input layer and the MMOD loss
with its options (dlib/dnn/input.h, dlib/dnn/loss.h, dlib/image_processing/
box_overlap_testing.h):
- input_rgb_image_pyramid: its name ("input_rgb_image_pyramid" or "...2"), the average
  red, green and blue (floats), and for "...2" the pyramid padding and outer padding
  (unsigned integers; 10 and 11 when absent);
- loss_mmod_: its name, then mmod_options: a version (1-4); the detector windows
  (version 1: one width and height; later: a vector, its length then per window a
  version, width, height and, from version 2, a label); loss per false alarm, loss per
  missed target, truth-match IoU (doubles); the NMS and ignore overlap testers (an IoU
  threshold and a percent-covered threshold each, doubles); from version 3 a raw byte
  (assume an image pyramid); from version 4 a bool (bounding box regression) and a double.
"""

from __future__ import annotations

from dataclasses import dataclass

from faceapi.adapters.engines.local.dlib_format import (
    DlibFormatError,
    Layer,
    Reader,
    Spec,
    check,
    read_layers,
)


def _rcon(filters: int, stride: int) -> list[Spec]:
    # relu<affine<con<filters,5,5,stride,stride,SUB>>>
    return [Spec("relu"), Spec("affine"), Spec("con", filters=filters, size=5, stride=stride)]


MMOD_ARCHITECTURE: tuple[Spec, ...] = (
    Spec("loss"),
    Spec("con", filters=1, size=9, stride=1),
    *_rcon(45, 1), *_rcon(45, 1), *_rcon(45, 1),
    *_rcon(32, 2), *_rcon(32, 2), *_rcon(16, 2),
    Spec("input"),
)
# The pyramid's rate: each level is 5/6 the size of the one above (pyramid_down<6>).
PYRAMID_DOWN = 6


@dataclass(frozen=True)
class DetectorWindow:
    width: int
    height: int
    label: str


@dataclass(frozen=True)
class MmodOptions:
    """What turns the network's output map into boxes (loss_mmod_::to_label)."""

    windows: tuple[DetectorWindow, ...]
    nms_iou: float  # test_box_overlap: intersection / bounding box of both above this
    nms_covered: float  # or intersection / either box's area above this
    use_bbr: bool


@dataclass(frozen=True)
class PyramidInput:
    """input_rgb_image_pyramid's settings."""

    mean: tuple[float, float, float]  # red, green, blue
    padding: int  # between pyramid levels
    outer_padding: int  # around the tiled image


@dataclass(frozen=True)
class MmodNetwork:
    layers: list[Layer]  # MMOD_ARCHITECTURE order; conv stack only between the ends
    pyramid: PyramidInput
    options: MmodOptions


def _window(reader: Reader) -> DetectorWindow:
    version = reader.integer()
    check(version in (1, 2), f"detector window version {version}")
    width, height = reader.integer(signed=False), reader.integer(signed=False)
    label = reader.string() if version == 2 else ""
    return DetectorWindow(width, height, label)


def _options(reader: Reader) -> MmodOptions:
    version = reader.integer()
    check(1 <= version <= 4, f"mmod_options version {version}")
    if version == 1:
        windows: tuple[DetectorWindow, ...] = (
            DetectorWindow(reader.integer(signed=False), reader.integer(signed=False), ""),)
    else:
        count = reader.integer(signed=False)
        check(0 < count <= 64, f"implausible detector window count {count}")
        windows = tuple(_window(reader) for _ in range(count))
    for _ in range(3):  # loss per false alarm / missed target, truth match IoU: training
        reader.real()
    nms_iou, nms_covered = reader.real(), reader.real()
    reader.real()  # overlaps_ignore: training only
    reader.real()
    if version >= 3:
        check(reader.byte() == 1, "the detector does not assume an image pyramid")
    use_bbr = False
    if version >= 4:
        use_bbr = reader.boolean()
        reader.real()  # bbr_lambda: training only
    check(all(w.width > 0 and w.height > 0 for w in windows), f"empty detector window {windows}")
    check(0.0 <= nms_iou <= 1.0 and 0.0 <= nms_covered <= 1.0,
          f"NMS thresholds {nms_iou}, {nms_covered} outside 0..1")
    return MmodOptions(windows=windows, nms_iou=nms_iou, nms_covered=nms_covered,
                       use_bbr=use_bbr)


def read_detector(data: bytes) -> MmodNetwork:
    """The MMOD network of a `.dat` file; DlibFormatError when it is another network."""
    found: dict[str, object] = {}

    def read_input(reader: Reader, layer: Layer) -> None:
        layer.name = reader.expect(("input_rgb_image_pyramid", "input_rgb_image_pyramid2"),
                                   "the pyramid input layer")
        layer.mean = (reader.single(), reader.single(), reader.single())
        padding, outer = 10, 11
        if layer.name == "input_rgb_image_pyramid2":
            padding, outer = reader.integer(signed=False), reader.integer(signed=False)
        check(padding < 1000 and outer < 1000, f"implausible pyramid padding {padding}/{outer}")
        found["pyramid"] = PyramidInput(layer.mean, padding, outer)

    def read_loss(reader: Reader, layer: Layer) -> None:
        layer.name = reader.expect(("loss_mmod_",), "the MMOD loss layer")
        found["options"] = _options(reader)

    layers = read_layers(data, MMOD_ARCHITECTURE, read_input=read_input, read_loss=read_loss)
    pyramid, options = found.get("pyramid"), found.get("options")
    if not isinstance(pyramid, PyramidInput) or not isinstance(options, MmodOptions):
        raise DlibFormatError("the file holds no pyramid input or MMOD loss")
    # The output map has one channel per window (five with box regression, which the
    # 9x9 layer's single filter rules out).
    check(not options.use_bbr and len(options.windows) == MMOD_ARCHITECTURE[1].filters,
          f"{len(options.windows)} detector windows for a 1-channel output map")
    return MmodNetwork(layers=layers, pyramid=pyramid, options=options)
