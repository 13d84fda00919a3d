import onnx
import pytest

from predictnas.errors import PredictnasError
from predictnas.supernet.export import OPSET, check_onnx, compare_with_torch, export_onnx, ort_session

# Odd lengths make the stride-2 layers and the restoring upsample trim; 611 is longer than the example.
FRAMES = (9, 37, 200, 611)


def test_onnx_runtime_equals_pytorch_for_every_choice_of_every_dimension(space, supernet, tmp_path):
    for i, arch in enumerate(space.covering()):
        subnet = supernet.extract(arch)
        path = export_onnx(subnet, tmp_path / f"{i}.onnx")
        check_onnx(path)
        parity = compare_with_torch(subnet, path, frames=FRAMES)
        assert parity.max_abs_diff <= 1e-4, (arch.to_json(), parity)


@pytest.mark.parametrize("index", [4, 11])
def test_the_dynamo_exporter_gives_the_same_model(space, supernet, tmp_path, index):
    subnet = supernet.extract(space.covering()[index])
    path = export_onnx(subnet, tmp_path / "m.onnx", exporter="dynamo")
    check_onnx(path)
    assert compare_with_torch(subnet, path, frames=FRAMES).max_abs_diff <= 1e-4


def test_graph_has_pinned_opset_and_dynamic_frames(space, supernet, tmp_path):
    arch = space.covering()[6]
    path = export_onnx(supernet.extract(arch), tmp_path / "m.onnx")
    model = onnx.load(str(path))
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {OPSET}
    [features] = model.graph.input
    dims = features.type.tensor_type.shape.dim
    assert dims[1].dim_param and dims[2].dim_value == space.config.n_mels
    session = ort_session(path)
    assert [o.name for o in session.get_outputs()] == ["ctc_logits", "intent_logits"]
    assert list(tmp_path.iterdir()) == [path]  # written atomically, no temp file left


def test_a_corrupt_onnx_file_fails_the_checker_in_one_line(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x07garbage")
    with pytest.raises(PredictnasError) as err:
        check_onnx(path)
    assert "\n" not in str(err.value)
