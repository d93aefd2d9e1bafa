"""dlib's MMOD CNN face detector's convolution stack as an ONNX graph, same weights.

The graph computes what dlib's net computes from its input tensor to its output map
(dlib 20.0.1, CPU code): three 5x5 stride-2 con_ layers without padding, three 5x5
stride-1 con_ layers padded by 2 and a 9x9 one padded by 4 (dlib's default padding:
size/2 at stride 1, none otherwise), each but the last followed by affine_ (the file's
batch-norm records as dlib turns them into affine_ when loading) and relu_. Its input is
the tiled image pyramid tensor that dlib's input_rgb_image_pyramid builds (mmod_pyramid.py
builds the same in numpy), its output the score map that loss_mmod_ reads. Pyramid and
decoding stay outside the graph: they are cheap and need the pyramid's layout.

Caching is onnx_files.ensure_model's job (kind MMOD); this module and `onnx` are
imported only to convert.
"""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from faceapi.adapters.engines.local.mmod_format import MmodNetwork, read_detector
from faceapi.adapters.engines.local.onnx_convert import (
    Graph,
    Tensor,
    layer_node,
    packaged_model,
    read_and_build,
    run_converter,
)
from faceapi.adapters.engines.local.onnx_files import (
    MMOD,
    MMOD_INPUT_NAME,
    MMOD_OUTPUT_NAME,
    ConversionError,
)

# The graph's rows and columns are free; shapes tracked while building use this nominal
# size only to check the channel counts.
_NOMINAL_SIDE = 256


def build_detector_model(network: MmodNetwork, *, source_sha256: str) -> onnx.ModelProto:
    """float32 (N, 3, rows, cols) pyramid tensor -> float32 (N, 1, rows', cols') scores."""
    graph = Graph()
    layers = network.layers
    x = Tensor(MMOD_INPUT_NAME, (3, _NOMINAL_SIDE, _NOMINAL_SIDE))
    outputs: dict[int, Tensor] = {}
    # Inner to outer; the loss (index 0) and the input (last) hold no computation.
    for index in range(len(layers) - 2, 0, -1):
        if layers[index].spec.kind not in ("con", "affine", "relu"):
            raise ConversionError(f"unexpected layer {layers[index].spec.kind} in the detector")
        x = layer_node(graph, layers[index], x, index, outputs)
        outputs[index] = x
    if x.shape[0] != len(network.options.windows):
        raise ConversionError(f"the network ends in {x.shape[0]} channels, not one per window")
    graph.nodes[-1].output[0] = MMOD_OUTPUT_NAME
    onnx_graph = helper.make_graph(
        graph.nodes, "mmod_human_face_detector",
        [helper.make_tensor_value_info(MMOD_INPUT_NAME, TensorProto.FLOAT,
                                       ["batch", 3, "rows", "columns"])],
        [helper.make_tensor_value_info(MMOD_OUTPUT_NAME, TensorProto.FLOAT,
                                       ["batch", x.shape[0], "out_rows", "out_columns"])],
        graph.initializers)
    return packaged_model(onnx_graph, source_name="mmod_human_face_detector.dat",
                          source_sha256=source_sha256, converter_version=MMOD.version)


def convert_detector(source: Path) -> tuple[onnx.ModelProto, str]:
    """Read and convert the detector's `.dat`; returns the model and the source's SHA-256."""
    return read_and_build(source, read_detector, lambda network, digest: build_detector_model(
        network, source_sha256=digest))


def main(argv: list[str] | None = None) -> int:
    return run_converter(convert_detector, MMOD.converter, argv)


if __name__ == "__main__":
    sys.exit(main())
