"""The one resolver: local folders in the amazon/bort layout, weights formats, and every bad reference."""

import json

import pytest
import torch
from conftest import TINY_ARCH, make_bort_layout

from bortzoo.errors import BortzooError
from bortzoo.hub import is_hub_id, load_config, load_masked_lm, load_tokenizer, resolve


def test_bort_layout_loads_model_and_roberta_tokenizer(bort_layout_dir):
    model = load_masked_lm(str(bort_layout_dir))
    assert type(model).__name__ == "BertForMaskedLM"
    assert model.config.num_hidden_layers == TINY_ARCH.depth
    tokenizer = load_tokenizer(str(bort_layout_dir))
    assert "Roberta" in type(tokenizer).__name__
    assert (tokenizer.pad_token_id, tokenizer.mask_token_id) == (1, 4)
    ids = tokenizer("the capital of france is paris.")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]))
    assert out.logits.shape == (1, len(ids), TINY_ARCH.vocab_size)


def test_weights_round_trip_exactly(tmp_path):
    """The loaded weights are the saved ones (nothing re-initialised), for safetensors and .bin."""
    from safetensors.torch import load_file

    for safetensors in (True, False):
        folder = make_bort_layout(tmp_path / str(safetensors), seed=3, safetensors=safetensors)
        model = load_masked_lm(str(folder))
        if safetensors:
            saved = load_file(str(folder / "model.safetensors"))
        else:
            saved = torch.load(folder / "pytorch_model.bin", weights_only=True)
        state = model.state_dict()
        for key, value in saved.items():
            assert torch.equal(state[key], value), key


def test_config_of_folder(bort_layout_dir):
    config = load_config(str(bort_layout_dir))
    assert (config.model_type, config.hidden_size, config.pad_token_id) == ("bert", TINY_ARCH.hidden, 1)


def test_tokenizer_only_folder(tiny_tokenizer_dir):
    assert len(load_tokenizer(tiny_tokenizer_dir)) == 512
    with pytest.raises(BortzooError, match="no config.json"):
        load_config(tiny_tokenizer_dir)


@pytest.mark.parametrize("ref, ok", [("amazon/bort", True), ("roberta-large", True), ("FacebookAI/roberta-large", True),
                                     ("./models/x", False), ("/abs/path", False), ("a/b/c", False), ("", False)])
def test_is_hub_id(ref, ok):
    assert is_hub_id(ref) is ok


def test_missing_folder(tmp_path):
    with pytest.raises(BortzooError, match="does not exist"):
        resolve(str(tmp_path / "nope" / "deeper"))
    with pytest.raises(BortzooError, match="empty model reference"):
        resolve("  ")


def test_file_instead_of_folder(tmp_path):
    path = tmp_path / "model.bin"
    path.write_text("x")
    with pytest.raises(BortzooError, match="is a file"):
        resolve(str(path))


def test_malformed_folders(tmp_path, bort_layout_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BortzooError, match="no config.json"):
        load_masked_lm(str(empty))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(BortzooError, match=r"config.json is not valid JSON"):
        load_masked_lm(str(broken))
    typeless = tmp_path / "typeless"
    typeless.mkdir()
    (typeless / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(BortzooError, match="no 'model_type'"):
        load_config(str(typeless))
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    (weightless / "config.json").write_text((bort_layout_dir / "config.json").read_text())
    with pytest.raises(BortzooError, match="has no weights"):
        load_masked_lm(str(weightless))
    with pytest.raises(BortzooError, match="no tokenizer files"):
        load_tokenizer(str(weightless))


def test_hub_id_while_offline_is_one_clear_error():
    with pytest.raises(BortzooError) as info:
        load_masked_lm("amazon/bort")
    message = str(info.value)
    assert "'amazon/bort'" in message and "HF_HUB_OFFLINE" in message and "local folder" in message


def test_unreachable_hub_falls_back_to_the_cache_then_one_clear_error(tmp_path, monkeypatch):
    """Online mode with nothing listening (huggingface_hub 2 raises httpx2 errors, which are not OSErrors)."""
    import socket

    from hub_server import hub_env
    from huggingface_hub import constants

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    hub_env(monkeypatch, tmp_path / "hf-home", closed)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BortzooError) as info:
        load_masked_lm("someone/some-model")
    message = str(info.value)
    assert "'someone/some-model'" in message and "unreachable" in message and "HF_HUB_OFFLINE" not in message
