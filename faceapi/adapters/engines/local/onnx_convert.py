"""dlib's face recognition ResNet as an ONNX graph, with the same weights.

`build_model` turns the layers read by dlib_format into an ONNX model computing what
dlib's net computes (dlib 20.0, CPU code in dlib/cuda/cpu_dlib.cpp):
- input: uint8 chips (N, 150, 150, 3) RGB as dlib.get_face_chip returns them; each
  value becomes (v - mean) / 256 in float32 (input_rgb_image_sized::to_tensor; dividing
  by 256 is exact, so the order of the steps does not change a bit);
- con_: cross-correlation with dlib's padding (size/2 at stride 1, none otherwise) plus
  the bias; affine_: x * gamma + beta; relu_; max_pool_ / avg_pool_ windows that always
  fit (no padding); avg_pool_everything: the mean of each channel;
- add_prev_: dlib adds tensors of different shapes by treating the missing values as
  zero (tt::add): a down-sampling block's 3x3 result is added to the top-left of the 4x4
  pooled shortcut, and a shortcut with fewer channels is zero-filled. The graph pads the
  smaller tensor with zeros at the end of each axis (ONNX Pad) before the Add;
- fc_no_bias: x @ W; loss_metric: the 128 values as they are (no normalisation).

Caching the result is onnx_files.py's job; this module (and the `onnx` package) is
imported only when a conversion is needed.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from faceapi.adapters.engines.local.dlib_format import (
    ARCHITECTURE,
    CHIP_SIZE,
    DlibFormatError,
    Layer,
    read_network,
)
from faceapi.adapters.engines.local.onnx_files import (
    CONVERTER_VERSION,
    DESCRIPTOR_SIZE,
    INPUT_NAME,
    OUTPUT_NAME,
    ConversionError,
)

OPSET = 17


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, int, int]  # channels, rows, columns (the batch axis is free)


class Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def constant(self, stem: str, value: np.ndarray) -> str:
        name = self.fresh(stem)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], stem: str, **attrs: Any) -> str:
        out = self.fresh(stem)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _out_size(size: int, window: int, stride: int, padding: int) -> int:
    return 1 + (size + 2 * padding - window) // stride


def _pad_to(graph: Graph, tensor: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """Zero-pad at the end of the channel/row/column axes up to `shape` (dlib tt::add)."""
    if tensor.shape == shape:
        return tensor
    extra = [target - have for target, have in zip(shape, tensor.shape, strict=True)]
    pads = np.array([0, 0, 0, 0, 0, *extra], dtype=np.int64)
    name = graph.node("Pad", [tensor.name, graph.constant("pads", pads)], "pad", mode="constant")
    return Tensor(name, shape)


def _tag_below(index: int, tag: int) -> int:
    """The first tag layer with this id below `index` (dlib's layer<tagN>(sub))."""
    for below in range(index + 1, len(ARCHITECTURE)):
        spec = ARCHITECTURE[below]
        if spec.kind == "tag" and spec.tag == tag:
            return below
    raise ConversionError(f"no tag{tag} below layer {index}")


def layer_node(graph: Graph, layer: Layer, x: Tensor, index: int,
               outputs: dict[int, Tensor]) -> Tensor:
    """The ONNX nodes computing `layer` (index `index` of ARCHITECTURE) on `x`; mmod_convert
    uses it for the con/affine/relu layers the two networks share."""
    spec = layer.spec
    c, h, w = x.shape
    if spec.kind == "con":
        if layer.weights is None or layer.bias is None:
            raise ConversionError(f"con layer {index} has no weights")
        p = layer.padding
        y = graph.node("Conv", [x.name, graph.constant("w", layer.weights),
                                graph.constant("b", layer.bias)], "conv",
                       kernel_shape=[spec.size, spec.size], strides=[spec.stride, spec.stride],
                       pads=[p, p, p, p])
        out = Tensor(y, (spec.filters, _out_size(h, spec.size, spec.stride, p),
                          _out_size(w, spec.size, spec.stride, p)))
        if layer.relu_after:
            out = Tensor(graph.node("Relu", [out.name], "relu"), out.shape)
        return out
    if spec.kind == "affine":
        if layer.disabled:
            return x
        if layer.gamma is None or layer.beta is None:
            raise ConversionError(f"affine layer {index} has no parameters")
        scaled = graph.node("Mul", [x.name, graph.constant("gamma", layer.gamma)], "scale")
        return Tensor(graph.node("Add", [scaled, graph.constant("beta", layer.beta)], "shift"),
                       x.shape)
    if spec.kind == "relu":
        return x if layer.disabled else Tensor(graph.node("Relu", [x.name], "relu"), x.shape)
    if spec.kind == "max_pool" or (spec.kind == "avg_pool" and spec.size):
        op = "MaxPool" if spec.kind == "max_pool" else "AveragePool"
        y = graph.node(op, [x.name], "pool", kernel_shape=[spec.size, spec.size],
                       strides=[spec.stride, spec.stride])
        return Tensor(y, (c, _out_size(h, spec.size, spec.stride, 0),
                           _out_size(w, spec.size, spec.stride, 0)))
    if spec.kind == "avg_pool":  # avg_pool_everything
        return Tensor(graph.node("GlobalAveragePool", [x.name], "gap"), (c, 1, 1))
    if spec.kind == "add_prev":
        other = outputs[_tag_below(index, spec.tag)]
        shape = (max(c, other.shape[0]), max(h, other.shape[1]), max(w, other.shape[2]))
        a, b = _pad_to(graph, x, shape), _pad_to(graph, other, shape)
        return Tensor(graph.node("Add", [a.name, b.name], "add"), shape)
    if spec.kind == "tag":
        return x
    if spec.kind == "skip":
        return outputs[_tag_below(index, spec.tag)]
    if spec.kind == "fc":
        if layer.weights is None:
            raise ConversionError("fc layer has no weights")
        flat = graph.node("Flatten", [x.name], "flat", axis=1)
        inputs = layer.weights.shape[0]
        if inputs != c * h * w:
            raise ConversionError(f"fc expects {inputs} inputs, the net gives {c * h * w}")
        y = graph.node("MatMul", [flat, graph.constant("fc", layer.weights)], "fc")
        return Tensor(y, (layer.weights.shape[1], 1, 1))
    raise ConversionError(f"cannot convert layer kind {spec.kind}")


def build_model(layers: list[Layer], *, source_sha256: str) -> onnx.ModelProto:
    """The ONNX model of the parsed network: uint8 (N,150,150,3) -> float32 (N,128)."""
    graph = Graph()
    mean = np.array(layers[-1].mean, dtype=np.float32)
    as_float = graph.node("Cast", [INPUT_NAME], "float", to=TensorProto.FLOAT)
    centred = graph.node("Sub", [as_float, graph.constant("mean", mean)], "centred")
    scaled = graph.node("Mul", [centred, graph.constant("scale", np.array(1.0 / 256.0,
                                                                          np.float32))], "scaled")
    nchw = graph.node("Transpose", [scaled], "nchw", perm=[0, 3, 1, 2])
    x = Tensor(nchw, (3, CHIP_SIZE, CHIP_SIZE))
    outputs: dict[int, Tensor] = {}
    # Inner to outer: the loss layer (index 0) and the input (last) hold no computation.
    for index in range(len(layers) - 2, 0, -1):
        x = layer_node(graph, layers[index], x, index, outputs)
        outputs[index] = x
    if x.shape != (DESCRIPTOR_SIZE, 1, 1):
        raise ConversionError(f"the network ends in {x.shape}, not {DESCRIPTOR_SIZE} values")
    graph.nodes[-1].output[0] = OUTPUT_NAME
    onnx_graph = helper.make_graph(
        graph.nodes, "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8,
                                       ["batch", CHIP_SIZE, CHIP_SIZE, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT,
                                       ["batch", DESCRIPTOR_SIZE])],
        graph.initializers)
    return packaged_model(onnx_graph, source_name="dlib_face_recognition_resnet_model_v1.dat",
                          source_sha256=source_sha256, converter_version=CONVERTER_VERSION)


def packaged_model(graph: onnx.GraphProto, *, source_name: str, source_sha256: str,
                   converter_version: int) -> onnx.ModelProto:
    """The checked ONNX model around `graph`, stamped with its source file, the source's
    SHA-256 and the converter's version (onnx_files names the cache file after them)."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="faceapi", producer_version=str(converter_version))
    # IR version 8 (onnx 1.10+) is read by every onnxruntime in use.
    model.ir_version = 8
    helper.set_model_props(model, {"source": source_name, "source_sha256": source_sha256,
                                   "converter_version": str(converter_version)})
    onnx.checker.check_model(model)
    return model


def read_and_build(source: Path, read: Callable[[bytes], Any],
                   build: Callable[[Any, str], onnx.ModelProto]) -> tuple[onnx.ModelProto, str]:
    """Parse a `.dat` file with `read` and convert it with `build(parsed, sha256)`;
    returns the model and the source's SHA-256. A malformed file is a ConversionError
    naming it."""
    data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        parsed = read(data)
    except DlibFormatError as exc:
        raise ConversionError(f"{source.name}: {exc}") from exc
    return build(parsed, digest), digest


def convert(source: Path) -> tuple[onnx.ModelProto, str]:
    """Read and convert the ResNet's `.dat` file; returns the model and its SHA-256."""
    return read_and_build(source, read_network,
                          lambda layers, digest: build_model(layers, source_sha256=digest))


Converter = Callable[[Path], tuple[onnx.ModelProto, str]]


def run_converter(convert_fn: Converter, module: str, argv: list[str] | None = None) -> int:
    """`python -m MODULE SOURCE DEST`: write the converted model to DEST and print the
    source's SHA-256. onnx_files.ensure_model runs this in a child process, so the
    server process neither imports `onnx` nor keeps the conversion's memory (which
    forked workers would otherwise inherit)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(f"usage: python -m {module} SOURCE DEST", file=sys.stderr)
        return 2
    try:
        model, digest = convert_fn(Path(args[0]))
        Path(args[1]).write_bytes(model.SerializeToString())
    except (ConversionError, OSError) as exc:
        print(f"conversion failed: {exc}", file=sys.stderr)
        return 1
    print(digest)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_converter(convert, "faceapi.adapters.engines.local.onnx_convert", argv)


if __name__ == "__main__":
    sys.exit(main())
