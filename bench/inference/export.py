"""``fer-bench export --onnx``: a checkpoint as an ONNX file with a dynamic batch axis, checked
against PyTorch with onnxruntime on the model's own example inputs.

Exporter: torch's TorchScript-based one (``torch.onnx.export(..., dynamo=False)``). Since torch
2.9 the default is the torch.export-based exporter, which needs the ``onnxscript`` package; the
TorchScript one works with ``onnx`` and ``onnxruntime`` alone, offline, and handles every model
in the zoo that ONNX can express (LSTM/GRU included).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from bench.errors import UserError

PARITY_TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| on CPU; float32 rounding sits far below
OPSET = 17


class ParityError(Exception):
    """The exported file computes something else than the checkpoint (message gives the number)."""


class LogitsAndFeatures(nn.Module):
    """The model's dict output as a tuple ONNX can name; dict inputs become named positional inputs
    (in ``input_names`` order), since an ONNX graph takes a flat list of tensors."""

    def __init__(self, model: nn.Module, input_names: list[str], nested: bool):
        super().__init__()
        self.model, self.input_names, self.nested = model, input_names, nested

    def forward(self, *tensors):
        x = unflatten(dict(zip(self.input_names, tensors))) if self.nested else tensors[0]
        out = self.model(x)
        return out["logits"], out["features"]


def flatten(inputs, prefix: str = "") -> dict[str, torch.Tensor]:
    """``{"visual": t, "voice": {"a": u}}`` -> ``{"visual": t, "voice.a": u}``; a tensor -> ``{"input": t}``."""
    if isinstance(inputs, torch.Tensor):
        return {prefix or "input": inputs}
    flat = {}
    for key, value in inputs.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else key))
    return flat


def unflatten(flat: dict[str, torch.Tensor]) -> dict:
    nested: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = nested
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return nested


@dataclass
class ExportReport:
    path: Path
    model: str
    input_names: list[str]
    max_abs_diff: float  # logits, over the parity batches
    features_max_abs_diff: float
    batch_sizes: list[int]
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff < PARITY_TOLERANCE and self.features_max_abs_diff < PARITY_TOLERANCE


def why_not_exportable(model: nn.Module, cfg) -> str | None:
    """A sentence saying why this model cannot become an ONNX file, or None."""
    estimator = sklearn_head(model)
    if estimator is not None and len(estimator.classes_) != getattr(model, "num_classes", len(estimator.classes_)):
        return (f"{cfg.model.name}'s scikit-learn head saw {len(estimator.classes_)} of the "
                f"{model.num_classes} classes in training; its ONNX graph could not name the others")
    return None


def sklearn_head(model: nn.Module):
    """The fitted scikit-learn estimator of a classic head or a fusion SVM head, else None."""
    if getattr(model, "is_classic", False):
        return model.estimator
    return getattr(model, "svc", None)


class FeaturesOnly(nn.Module):
    """The torch half of a model with a scikit-learn head: inputs -> the features the head reads."""

    def __init__(self, model: nn.Module, input_names: list[str], nested: bool):
        super().__init__()
        self.model, self.input_names, self.nested = model, input_names, nested
        self.network = model if getattr(model, "is_classic", False) else model.model

    def forward(self, *tensors):
        x = unflatten(dict(zip(self.input_names, tensors))) if self.nested else tensors[0]
        return self.network.forward_features(x)


def _sklearn_graph(model: nn.Module, sample_features: np.ndarray, opset: int):
    """The head as ONNX (skl2onnx): input ``head_in`` (N x F float), output ``probabilities`` (no
    ZipMap, so a plain N x K tensor)."""
    from skl2onnx import to_onnx

    estimator = sklearn_head(model)
    options = {id(step): {"zipmap": False} for _, step in getattr(estimator, "steps", [])[-1:]}
    options = options or {id(estimator): {"zipmap": False}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # skl2onnx reads SVC attributes sklearn 1.9 deprecates
        graph = to_onnx(estimator, sample_features.astype(np.float32), options=options,
                        target_opset={"": opset, "ai.onnx.ml": 3})
    import onnx.compose

    return onnx.compose.add_prefix(graph, "head_")


def _export_with_sklearn_head(model: nn.Module, cfg, out: Path, opset: int, sample, names: list[str],
                              nested: bool) -> None:
    """torch (inputs -> features) and skl2onnx (features -> probabilities) merged into one graph
    whose outputs are ``logits`` (log-probabilities, as the model returns) and ``features``."""
    import io

    import onnx
    import onnx.compose
    from onnx import TensorProto, helper

    wrapper = FeaturesOnly(model, names, nested).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, tuple(flatten(sample).values()), buffer, input_names=names,
                          output_names=["net_features"],
                          dynamic_axes={n: {0: "batch"} for n in [*names, "net_features"]},
                          opset_version=opset, dynamo=False, do_constant_folding=True)
        features = wrapper(*flatten(sample).values()).numpy()
    network = onnx.load_from_string(buffer.getvalue())
    head = _sklearn_graph(model, features, opset)
    head_input = head.graph.input[0].name
    probs = next(o.name for o in head.graph.output if o.name.endswith("probabilities"))
    network.ir_version = head.ir_version = max(network.ir_version, head.ir_version)
    # the features stay an output too: an Identity copy the merge does not consume
    network.graph.node.append(helper.make_node("Identity", ["net_features"], ["features"]))
    network.graph.output.append(helper.make_tensor_value_info("features", TensorProto.FLOAT,
                                                              ["batch", features.shape[1]]))
    merged = onnx.compose.merge_models(network, head, io_map=[("net_features", head_input)],
                                       outputs=["features", probs])
    graph = merged.graph
    graph.node.extend([
        helper.make_node("Constant", [], ["tiny"], value=helper.make_tensor("tiny", TensorProto.FLOAT, [], [1e-12])),
        helper.make_node("Max", [probs, "tiny"], ["clamped"]),
        helper.make_node("Log", ["clamped"], ["logits"]),
    ])
    del graph.output[:]
    classes = len(sklearn_head(model).classes_)
    graph.output.extend([helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes]),
                         helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", features.shape[1]])])
    onnx.checker.check_model(merged)
    onnx.save(merged, str(out))


def export_onnx(checkpoint_dir: str | Path, out: str | Path, *, opset: int = OPSET,
                batch_sizes: tuple[int, ...] = (2, 3), seed: int = 0) -> ExportReport:
    """Write ``out`` and compare it with PyTorch on example inputs at each of ``batch_sizes``
    (a size the export did not trace proves the batch axis is really dynamic)."""
    import onnxruntime as ort

    from bench.training.ensemble import EnsembleModel, load_model_or_ensemble
    from fer_models import example_inputs

    start = time.perf_counter()
    model, cfg, _ = load_model_or_ensemble(checkpoint_dir)
    name = cfg.model.name
    if isinstance(model, EnsembleModel):  # one graph: every member, probabilities averaged
        name = f"ensemble({'+'.join(model.member_names)})"
        if any(sklearn_head(m) is not None for m in model.members):
            raise UserError("an ensemble with a scikit-learn head among its members cannot be exported as one "
                            "ONNX graph; export its members one by one")
    reason = why_not_exportable(model, cfg)
    if reason:
        raise UserError(reason)
    model = model.cpu().eval()
    generator = torch.Generator().manual_seed(seed)
    sample = example_inputs(model, batch_size=batch_sizes[0], generator=generator)
    nested = not isinstance(sample, torch.Tensor)
    flat = flatten(sample)
    names = list(flat)
    wrapper = LogitsAndFeatures(model, names, nested).eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    axes = {n: {0: "batch"} for n in [*names, "logits", "features"]}
    with_head = sklearn_head(model) is not None
    try:
        if with_head:
            _export_with_sklearn_head(model, cfg, out, opset, sample, names, nested)
        else:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer chatter
                torch.onnx.export(wrapper, tuple(flat.values()), str(out), input_names=names,
                                  output_names=["logits", "features"], dynamic_axes=axes, opset_version=opset,
                                  dynamo=False, do_constant_folding=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{name} cannot be exported to ONNX: {first}") from None
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits_diff = features_diff = 0.0
    for batch in batch_sizes:
        x = flatten(example_inputs(model, batch_size=batch, generator=generator))
        with torch.no_grad():
            ref = model(unflatten(x) if nested else x["input"])
        got_logits, got_features = session.run(["logits", "features"], {k: v.numpy() for k, v in x.items()})
        if with_head:  # compared as probabilities: the log of a near-zero one magnifies float32 rounding
            got_logits, want = np.exp(got_logits), ref["logits"].double().exp().numpy()
        else:
            want = ref["logits"].numpy()
        logits_diff = max(logits_diff, float(np.abs(got_logits - want).max()))
        features_diff = max(features_diff, float(np.abs(got_features - ref["features"].numpy()).max()))
    notes = ["scikit-learn head converted by skl2onnx; logits parity checked on probabilities"] if with_head else []
    return ExportReport(out, name, names, logits_diff, features_diff, list(batch_sizes),
                        time.perf_counter() - start, notes)
