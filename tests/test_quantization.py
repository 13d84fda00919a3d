"""The int8 simulation against the device it stands for: ONNX Runtime's dynamically quantized graph."""

import tempfile
from pathlib import Path

import numpy as np
import torch

from predictnas.latency.devices import get_device
from predictnas.quantization import int8_model, quantize_activations, quantize_weights
from predictnas.space import get_space, largest_arch
from predictnas.supernet import Subnet
from predictnas.supernet.export import INPUT_NAME, export_onnx


def test_the_simulation_computes_what_the_int8_device_computes_utterance_by_utterance():
    space = get_space("speech-tiny")
    archs = [largest_arch(space)] + [space.decode(g) for g in space.sample(3, np.random.default_rng(1))]
    lengths = torch.tensor([150, 97, 40])
    torch.manual_seed(0)
    features = torch.randn(3, 150, space.config.n_mels)
    exact = 0
    for arch in archs:
        model = Subnet(arch, space.config).eval()
        with tempfile.TemporaryDirectory() as tmp:
            exported = export_onnx(model, Path(tmp) / "model.onnx").read_bytes()
        int8, fp32 = (get_device(name) for name in ("cpu-int8", "cpu"))
        quantized, plain = int8.session(int8.prepare(exported)), fp32.session(exported)
        with torch.no_grad():
            simulated = int8_model(model)(features, lengths)  # one padded batch
        for row, n in enumerate(lengths.tolist()):
            feeds = {INPUT_NAME: features[row:row + 1, :n].numpy()}
            device, float_out = quantized.run(None, feeds)[0][0], plain.run(None, feeds)[0][0]
            ours = simulated.ctc_logits[row, :len(device)].numpy()
            quantization_error = np.abs(device - float_out).mean()
            assert quantization_error > 1e-3  # int8 changes the outputs...
            # ...as the device does, closer to it than float is: float32 details (a layer norm's last bit)
            # put a few values on the other side of a rounding step, and those steps travel on
            assert np.abs(ours - device).mean() < 0.75 * quantization_error, arch.arch_id
            exact += int(np.abs(ours - device).max() < 1e-4)
    assert exact >= len(archs) * len(lengths) // 2  # in most utterances no value flips at all


def test_quantization_grids():
    w = torch.tensor([[-2.0, 0.5], [1.0, 0.0]])
    assert torch.equal(quantize_weights(w), torch.round(w / (2 / 127)).clamp(-127, 127) * (2 / 127))
    x = torch.tensor([[[0.2, 0.9], [0.4, 0.3]], [[-1.0, 1.0], [5.0, 5.0]]])  # the second utterance's last frame is padding
    valid = torch.tensor([[True, True], [True, False]])
    q = quantize_activations(x, valid)
    assert torch.allclose(q[0], torch.round(x[0] / (0.9 / 255)) * (0.9 / 255))  # range [0, 0.9]: zero point 0
    scale = 2.0 / 255
    assert torch.allclose(q[1, 0], (torch.round(x[1, 0] / scale) + 128 - 128) * scale)  # padding left out of the range
