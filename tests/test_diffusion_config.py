"""Models config, quick checkpoint checks, DiffusionModels.describe/check and the
``headsplat models`` command, on tiny real checkpoints and deliberately broken copies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from compute_server.cli.main import main as cli_main
from compute_server.diffusion.checkpoints import check_directory, check_model
from compute_server.diffusion.config import load_models_config, parse_model_entry
from compute_server.diffusion.normal_encoding import decode_normals, encode_normals, parse_normal_encoding
from compute_server.diffusion.registry import DiffusionModels
from compute_server.diffusion.weights_files import WeightFileError, safetensors_header
from compute_server.errors import UserError
from compute_server.render.normal_maps import normal_map_to_rgb
from tests.server_harness import REPO_ROOT
from tests.test_diffusion_support import models_config, one_torch_thread, tiny  # noqa: F401  (fixtures)

UNET_WEIGHTS = os.path.join("unet", "diffusion_pytorch_model.safetensors")


def broken_copy(src: str, dst, edit) -> str:
    """A copy of a checkpoint folder with one thing broken by ``edit(folder)``."""
    folder = str(dst)
    shutil.copytree(src, folder)
    edit(folder)
    return folder


def test_json_and_toml_configs_parse_alike(tmp_path, tiny):
    json_path = models_config(tmp_path, tiny)
    toml_path = models_config(tmp_path, tiny, name="models.toml")
    a, b = load_models_config(json_path), load_models_config(toml_path)
    assert [m.name for m in a] == ["tiny-sd", "tiny-sd-ip", "tiny-mv", "tiny-mv-normals"]
    for x, y in zip(a, b):
        assert (x.backend, x.base, x.controlnet, x.pipeline, x.ip_adapter, x.prior, x.steps) == \
               (y.backend, y.base, y.controlnet, y.pipeline, y.ip_adapter, y.prior, y.steps)
    assert a[1].ip_adapter.weight_file.endswith(os.path.join("models", "ip-adapter_sd15.safetensors"))
    assert a[0].prior.k == 250 and a[0].prior.views == 2


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "m.json"
    path.write_text(json.dumps({"models": [{"name": "a", "backend": "controlnet-normal", "base": "../sd",
                                            "controlnet": "cn"}]}))
    model = load_models_config(str(path))[0]
    assert model.base == str(tmp_path / "sd") and model.controlnet == str(tmp_path / "conf" / "cn")


@pytest.mark.parametrize("entry, words", [
    ({"name": "a", "backend": "magic"}, ["'backend'", "controlnet-normal"]),
    ({"name": "a", "backend": "controlnet-normal", "base": "x"}, ["'controlnet'", "required"]),
    ({"name": "a", "backend": "multiview"}, ["'pipeline'", "required"]),
    ({"name": "a", "backend": "multiview", "pipeline": "x", "stregth": 0.5}, ["unknown key", "stregth"]),
    ({"name": "a", "backend": "multiview", "pipeline": "x", "strength": 1.5}, ["'strength'", "between"]),
    ({"name": "a", "backend": "multiview", "pipeline": "x", "steps": "ten"}, ["'steps'", "integer"]),
    ({"name": "a", "backend": "multiview", "pipeline": "https://hub/model"}, ["local folder", "never downloads"]),
    ({"name": "none", "backend": "multiview", "pipeline": "x"}, ["'name'"]),
    ({"name": "a", "backend": "multiview", "pipeline": "x", "normal_encoding": "x,x,z"}, ["normal_encoding"]),
    ({"name": "a", "backend": "multiview", "pipeline": "x", "prior": {"t_min": 0.9, "t_max": 0.1}}, ["t_min"]),
])
def test_bad_entries_name_the_file_entry_and_key(entry, words):
    with pytest.raises(UserError) as err:
        parse_model_entry(entry, "/etc/headsplat/models.json", 0)
    assert err.value.code == "bad_request"
    assert "/etc/headsplat/models.json" in err.value.message and "model 1" in err.value.message
    for word in words:
        assert word in err.value.message


def test_unreadable_configs(tmp_path):
    bad = tmp_path / "m.toml"
    bad.write_text("[[models]\nname = ")
    for path, words in [(str(tmp_path / "missing.json"), "does not exist"), (str(bad), "not valid TOML"),
                        (str(tmp_path / "m.yaml"), "does not exist")]:
        with pytest.raises(UserError, match=words) as err:
            load_models_config(path)
        assert err.value.code == "bad_request" and path in err.value.message
    dup = tmp_path / "d.json"
    entry = {"name": "a", "backend": "multiview", "pipeline": "x"}
    dup.write_text(json.dumps({"models": [entry, entry]}))
    with pytest.raises(UserError, match="two models are named 'a'"):
        DiffusionModels.from_config(str(dup))
    assert DiffusionModels.from_config(None).describe() == []


def test_normal_encodings_match_the_renderer_and_round_trip():
    rng = np.random.default_rng(0)
    normals = rng.normal(size=(2, 5, 7, 3)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    mask = (rng.random((2, 5, 7)) > 0.3).astype(np.float32)
    for name in ("opengl", "opencv"):
        ours = encode_normals(normals, mask, name, background=(0, 0, 0))
        theirs = normal_map_to_rgb(torch.as_tensor(normals), torch.as_tensor(mask), name).numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    for spec in ("opengl", "-x,y,-z", "z,x,-y"):
        back = decode_normals(encode_normals(normals, np.ones_like(mask), spec), spec)
        np.testing.assert_allclose(back, normals, atol=1e-5)
    facing_viewer = encode_normals(np.array([[[[0, 0, -1.0]]]]), np.ones((1, 1, 1)), "opengl")
    np.testing.assert_allclose(facing_viewer[0, 0, 0], [0.5, 0.5, 1.0])
    with pytest.raises(ValueError):
        parse_normal_encoding("x,y")


# The colours ControlNet 1.1's normal model (lllyasviel/control_v11p_sd15_normalbae) was
# trained on. Source: lllyasviel/ControlNet-v1-1-nightly, annotator/normalbae/__init__.py
# (Bae et al.'s ScanNet estimate written as (n + 1) / 2 per channel, no axis change) and
# README.md, "ControlNet 1.1 Normal": "blue is front, red is left, green is top" (ScanNet's
# protocol; baegwangbin/surface_normal_uncertainty figs/readme_scannet.png shows walls
# facing image left in magenta, (223, 73, 165), walls facing right in teal, (45, 131, 159),
# the floor green, (158, 243, 190)). Normals are in the OpenCV camera frame (+X right,
# +Y down, +Z away from the viewer).
NORMALBAE_COLOURS = {
    "facing the camera": ([0.0, 0.0, -1.0], [0.5, 0.5, 1.0]),
    "facing image left": ([-1.0, 0.0, 0.0], [1.0, 0.5, 0.5]),
    "facing up": ([0.0, -1.0, 0.0], [0.5, 1.0, 0.5]),
}


def test_controlnet_backend_encodes_normals_as_control_v11p_sd15_normalbae_learned_them(tmp_path):
    entry = {"name": "sd15-normal", "backend": "controlnet-normal", "base": str(tmp_path), "controlnet": str(tmp_path)}
    encoding = parse_model_entry(entry, str(tmp_path / "models.json"), 0).normal_encoding   # the default
    for name, (normal, colour) in NORMALBAE_COLOURS.items():
        rgb = encode_normals(np.array([[normal]]), np.ones((1, 1)), encoding)[0, 0]
        np.testing.assert_allclose(rgb, colour, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(decode_normals(rgb, encoding), normal, atol=1e-6, err_msg=name)
    # "opengl" (renderers' normal passes) puts image *right* in red: not what the checkpoint saw
    facing_left = encode_normals(np.array([[NORMALBAE_COLOURS["facing image left"][0]]]), np.ones((1, 1)), "opengl")
    assert facing_left[0, 0, 0] == 0.0


def test_the_rendered_heads_normal_map_has_the_normalbae_colours_on_its_sides():
    """The head's own normals (render_surface, OpenCV frame) under the default encoding: the
    silhouette's image-left edge is red, its right edge has no red, its top is green."""
    from compute_server.diffusion.config import ModelConfig
    from tests.test_diffusion_support import synthetic_input

    _, inp = synthetic_input(64)
    mask = inp.surface.mask > 0.5
    rgb = encode_normals(inp.surface.normals_camera, mask.astype(np.float32), ModelConfig("a", "controlnet-normal")
                         .normal_encoding)
    rows = np.flatnonzero(mask.any(axis=1))
    middle = rows[len(rows) // 2]
    cols = np.flatnonzero(mask[middle])
    left, right = rgb[middle, cols[0]], rgb[middle, cols[-1]]
    top = rgb[rows[0], np.flatnonzero(mask[rows[0]])].mean(axis=0)
    assert left[0] > 0.7 and right[0] < 0.3, (left, right)       # measured 0.83 and 0.22
    assert top[1] > 0.6, top                                      # measured 0.67 (0.33 if green were down)


def test_safetensors_header_catches_truncation_and_garbage(tmp_path, tiny):
    good = os.path.join(tiny.base, UNET_WEIGHTS)
    header = safetensors_header(good)
    assert header["conv_in.weight"]["shape"] == [32, 4, 3, 3]
    cut = tmp_path / "cut.safetensors"
    data = open(good, "rb").read()
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(WeightFileError, match="truncated"):
        safetensors_header(str(cut))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00" + b"not json at all!" + b"\0" * 64)
    with pytest.raises(WeightFileError, match="corrupt"):
        safetensors_header(str(junk))


def test_tiny_checkpoints_pass_and_every_kind_is_recognised(tiny):
    kinds = {path: check_directory(path) for path in (tiny.base, tiny.controlnet, tiny.ip_adapter, tiny.multiview)}
    assert [r.kind for r in kinds.values()] == ["stable-diffusion", "controlnet", "ip-adapter", "multiview"]
    assert all(r.usable for r in kinds.values()), [r.problem for r in kinds.values()]
    assert kinds[tiny.controlnet].details["conditioning_factor"] == kinds[tiny.base].details["vae_factor"] == 4


def _truncate_unet(folder):
    path = os.path.join(folder, UNET_WEIGHTS)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _wrong_unet_config(folder):
    path = os.path.join(folder, "unet", "config.json")
    config = json.load(open(path))
    config["block_out_channels"] = [64, 64]
    json.dump(config, open(path, "w"))


@pytest.mark.parametrize("edit, words", [
    (lambda f: os.remove(os.path.join(f, UNET_WEIGHTS)), ["no weights in unet/", "incomplete"]),
    (_truncate_unet, ["unet/diffusion_pytorch_model.safetensors", "truncated"]),
    (_wrong_unet_config, ["does not match its weights", "conv_in.weight"]),
    (lambda f: shutil.rmtree(os.path.join(f, "tokenizer")), ["tokenizer"]),
    (lambda f: os.remove(os.path.join(f, "model_index.json")), ["model_index.json"]),
    (lambda f: open(os.path.join(f, "vae", "config.json"), "w").write("{oops"), ["vae/config.json", "cannot be read"]),
])
def test_broken_base_folders_are_refused_with_the_reason(tmp_path, tiny, edit, words):
    folder = broken_copy(tiny.base, tmp_path / "sd", edit)
    result = check_directory(folder)
    assert not result.usable and result.kind == "stable-diffusion"
    assert folder in result.problem
    for word in words:
        assert word in result.problem


def test_components_that_do_not_fit_together(tmp_path, tiny):
    def vae_factor_8(folder):
        path = os.path.join(folder, "config.json")
        config = json.load(open(path))
        config["conditioning_embedding_out_channels"] = [8, 8, 8, 16]
        json.dump(config, open(path, "w"))

    entry = {"name": "a", "backend": "controlnet-normal", "base": tiny.base, "controlnet": tiny.controlnet}
    assert check_model(parse_model_entry(entry, str(tmp_path / "m.json"), 0)).usable
    # The ControlNet's conditioning embedding must downsample by the VAE's factor (4 here).
    mismatched = broken_copy(tiny.controlnet, tmp_path / "cn8", vae_factor_8)
    assert check_directory(mismatched).usable      # fine on its own ...
    result = check_model(parse_model_entry({**entry, "controlnet": mismatched}, str(tmp_path / "m.json"), 0))
    assert not result.usable                       # ... but not with this base
    assert "downsamples its conditioning image by 8 but the VAE" in result.problem and mismatched in result.problem
    # A ControlNet made for another base (SD 2's width) is refused the same way.
    from compute_server.diffusion.checkpoints import check_controlnet, check_stable_diffusion, controlnet_fits
    sd, cn = check_stable_diffusion(tiny.base), check_controlnet(tiny.controlnet)
    cn.details = {**cn.details, "cross_attention_dim": 1024}
    assert "cross-attention width 1024" in controlnet_fits(sd, cn)


def test_multiview_manifest_problems(tmp_path, tiny):
    def edit_manifest(change):
        def edit(folder):
            path = os.path.join(folder, "headsplat_multiview.json")
            manifest = json.load(open(path))
            change(manifest)
            json.dump(manifest, open(path, "w"))
        return edit

    cases = [(edit_manifest(lambda m: m.update(adapter="adapter.py:Missing")), "no adapter file adapter.py"),
             (edit_manifest(lambda m: m.update(adapter="headsplat:magic")), "built-in adapter"),
             (edit_manifest(lambda m: m.update(resolution=100)), "multiple of 8"),
             (edit_manifest(lambda m: m.update(outputs_normals=True)), "disagrees"),
             (lambda f: os.remove(os.path.join(f, "headsplat_multiview.json")), "no headsplat_multiview.json")]
    for i, (edit, words) in enumerate(cases):
        result = check_directory(broken_copy(tiny.multiview, tmp_path / f"mv{i}", edit))
        assert not result.usable and words in result.problem, result.problem


def test_models_check_is_quick_reports_and_notices_repairs(tmp_path, tiny):
    broken = broken_copy(tiny.base, tmp_path / "sd-broken", _truncate_unet)
    path = models_config(tmp_path, tiny)
    config = json.load(open(path))
    config["models"].append({**config["models"][0], "name": "broken-sd", "base": broken})
    json.dump(config, open(path, "w"))
    models = DiffusionModels.from_config(path)
    listed = {m["name"]: m for m in models.describe()}
    assert listed["tiny-sd"]["usable"] and listed["tiny-sd"]["problem"] is None
    assert not listed["broken-sd"]["usable"] and "truncated" in listed["broken-sd"]["problem"]
    models.check("tiny-mv")
    with pytest.raises(UserError) as err:
        models.check("broken-sd")
    assert err.value.code == "bad_model" and "broken-sd" in err.value.message and "truncated" in err.value.message
    with pytest.raises(UserError) as err:
        models.check("sdxl-turbo")
    assert err.value.code == "unavailable" and "tiny-sd" in err.value.message
    with pytest.raises(UserError):
        models.backend("broken-sd", "cpu")
    shutil.copy(os.path.join(tiny.base, UNET_WEIGHTS), os.path.join(broken, UNET_WEIGHTS))   # the user repairs it
    models.check("broken-sd")


def test_models_check_command(tmp_path, tiny, capsys):
    assert cli_main(["models", "check", tiny.base, tiny.multiview]) == 0
    out = capsys.readouterr().out
    assert f"{tiny.base}: usable (stable-diffusion)" in out and "multi-view pipeline" in out
    broken = broken_copy(tiny.controlnet, tmp_path / "cn", lambda f: os.remove(
        os.path.join(f, "diffusion_pytorch_model.safetensors")))
    assert cli_main(["models", "check", broken]) == 2
    assert "NOT usable" in capsys.readouterr().out
    assert cli_main(["models", "check", "--json", str(tmp_path / "nothing")]) == 2
    assert json.loads(capsys.readouterr().out)[0]["problem"].endswith("does not exist")
    assert cli_main(["models", "list", "--config", models_config(tmp_path, tiny)]) == 0
    assert "tiny-mv-normals (multiview, 64 px, with the denoising prior): usable" in capsys.readouterr().out
    assert cli_main(["models", "list", "--config", str(tmp_path / "nope.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_models_check_console_script(tiny):
    """The installed entry point, as a user runs it (a fresh process, no GPU, no network)."""
    proc = subprocess.run([sys.executable, "-m", "compute_server.cli.main", "models", "check", tiny.ip_adapter],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usable (ip-adapter)" in proc.stdout
