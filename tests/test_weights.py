"""Official checkpoint layout -> our modules, strict loading with clear refusals, our own safetensors files."""

import json
from pathlib import Path

import pytest
import torch

from cdtcodec.config import PRESETS, CDTConfig
from cdtcodec.model import CDT, count_parameters
from cdtcodec.weights import WeightsError, convert_official, load_model, official_key_to_ours, read_tensors, save_model

DATA = Path(__file__).parent / "data" / "conformance"
LAYOUT = json.loads((DATA / "official_state_dict_layout.json").read_text())


@pytest.mark.parametrize("preset", ["cdt-base", "cdt-small"])
def test_official_layout_maps_onto_every_parameter(preset):
    official = LAYOUT[preset]
    with torch.device("meta"):
        model = CDT(PRESETS[preset])
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mapped = {official_key_to_ours(k): tuple(shape) for k, shape in official["state_dict"].items()}
    assert len(mapped) == len(official["state_dict"])  # the mapping is one-to-one
    assert mapped == ours
    assert count_parameters(model) == official["num_params"]
    assert count_parameters(model.denoiser) == official["params_denoise_fn"]


def test_parameter_counts_of_official_presets():
    counts = {}
    for name in ("cdt-base", "cdt-small"):
        with torch.device("meta"):
            counts[name] = count_parameters(CDT(PRESETS[name]))
    assert counts == {"cdt-base": 192_592_755, "cdt-small": 120_672_838}


def _official_checkpoint(tmp_path, wrap):
    tensors = read_tensors(DATA / "small_like.weights.safetensors")
    path = tmp_path / "official.ckpt"
    torch.save(wrap(tensors), path)
    return path, tensors


@pytest.mark.parametrize("wrap", [lambda s: s, lambda s: {"state_dict": s}, lambda s: {"module": s},
                                  lambda s: {"state_dict": {f"module.{k}": v for k, v in s.items()}}])
def test_ckpt_unwrapping_and_preset_refusal(tmp_path, wrap):
    path, tensors = _official_checkpoint(tmp_path, wrap)
    # Tiny widths match no preset: the refusal names the preset and the first offending keys.
    with pytest.raises(WeightsError, match=r"cdt-small: \d+ problems: .*shape encoder.stages.0.res.block1.conv.weight"):
        convert_official(path, "cdt-small")


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    tensors = read_tensors(DATA / "small_like.weights.safetensors")
    first = sorted(tensors)[0]
    tensors.pop(first)
    tensors["model.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": tensors}, tmp_path / "bad.ckpt")
    with pytest.raises(WeightsError) as err:
        convert_official(tmp_path / "bad.ckpt", "cdt-small")
    message = str(err.value)
    assert f"missing {official_key_to_ours(first)}" in message and "unexpected extra.weight" in message
    assert "\n" not in message


def test_save_load_roundtrip_keeps_config_and_outputs(tmp_path):
    cfg = CDTConfig(context_dim=8, unet_dim=4)
    model = CDT(cfg).eval()
    save_model(model, tmp_path / "m.safetensors", name="toy")
    loaded, name, digest = load_model(tmp_path / "m.safetensors")
    assert name == "toy" and loaded.cfg == cfg and len(digest) == 64
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.encode(video), loaded.encode(video))


def test_fp16_file_loads_as_fp32(tmp_path):
    model = CDT(CDTConfig(context_dim=8, unet_dim=4))
    save_model(model, tmp_path / "h.safetensors", name="toy", half=True)
    loaded, _, _ = load_model(tmp_path / "h.safetensors")
    p = next(loaded.parameters())
    assert p.dtype == torch.float32
    ref = dict(model.named_parameters())
    for k, v in loaded.named_parameters():
        assert torch.allclose(v, ref[k].half().float())


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(WeightsError, match="no such weights file"):
        load_model(tmp_path / "absent.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(WeightsError, match="not a readable"):
        load_model(junk)


def test_weights_and_prior_files_get_the_umask_permissions(tmp_path):
    """safetensors replaces the file it is given with a 0600 one; ours are readable as the umask allows."""
    import os
    import stat

    from bitstream.prior import PriorArch, save_prior
    from cdtcodec.rate.prior_twin import ConditionalPrior, to_integer

    umask = os.umask(0o022)
    try:
        save_model(CDT(CDTConfig(context_dim=8, unet_dim=4)), tmp_path / "m.safetensors", name="toy")
        save_prior(to_integer(ConditionalPrior(PriorArch())), tmp_path / "m.prior.safetensors")
    finally:
        os.umask(umask)
    for name in ("m.safetensors", "m.prior.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.prior.safetensors", "m.safetensors"]  # no temporaries
