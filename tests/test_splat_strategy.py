"""Densification keeps the triangle binding consistent and never orphans a triangle."""

import pytest
import torch

from compute_server.splats.model import SplatModel
from compute_server.splats.strategy import BindingDensifyStrategy, keep_one_per_face


def _model(n=12, n_faces=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return SplatModel.from_tensors(
        means=torch.randn(n, 3, generator=g) * 0.1, scales=torch.full((n, 3), -1.0),
        quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), opacities=torch.zeros(n),
        sh0=torch.rand(n, 1, 3, generator=g), shN=torch.zeros(n, 3, 3),
        binding=torch.arange(n) % n_faces, sh_degree=1)


def _optimizers(model):
    return {name: torch.optim.Adam([p], lr=1e-3) for name, p in model.params.items()}


def _meta_with_grad(model, grad_rows):
    means2d = torch.zeros(1, model.count, 2, requires_grad=True)
    means2d.grad = torch.zeros(1, model.count, 2)
    means2d.grad[0, grad_rows] = 1.0
    return {"means2d": means2d, "radii": torch.ones(1, model.count, dtype=torch.int32), "width": 64, "height": 64}


@pytest.mark.parametrize("expression_colour", [False, True])
def test_clone_and_split_inherit_binding_and_keep_optimizer_state_in_sync(expression_colour):
    torch.manual_seed(0)
    model = _model()
    if expression_colour:        # the optional per-Gaussian term follows its Gaussian too
        model.add_expression_colour(5)
        with torch.no_grad():
            model.params["expression_colour"][:] = torch.arange(model.count, dtype=torch.float32)[:, None, None]
    opts = _optimizers(model)
    strategy = BindingDensifyStrategy(refine_start=0, refine_every=1, prune_opacity=0.0, reset_opacity_every=0)
    state = strategy.initialize_state(model)
    world_scales = torch.full((model.count, 3), 0.001)
    world_scales[5] = 0.15  # big -> split (but under the prune size)
    meta = _meta_with_grad(model, [1, 5])
    old_binding = model.binding.clone()
    changes = strategy.step_post_backward(model, opts, state, step=1, meta=meta, world_scales=world_scales,
                                          head_size=1.0, n_faces=4)
    assert changes["cloned"] == 1 and changes["split"] == 1
    assert model.count == 12 + 1 + 1
    counts_after = torch.bincount(model.binding, minlength=4)
    counts_before = torch.bincount(old_binding, minlength=4)
    expected = counts_before.clone()
    expected[old_binding[1]] += 1
    expected[old_binding[5]] += 1
    assert torch.equal(counts_after, expected)
    for name, p in model.params.items():
        assert p.shape[0] == model.count
        assert opts[name].param_groups[0]["params"][0] is p
    assert state["binding"] is model.binding
    if expression_colour:        # Gaussian i's term sits on Gaussian i's copies
        kept = [i for i in range(12) if i != 5]
        rows = model.params["expression_colour"][:, 0, 0].tolist()
        assert rows == [float(i) for i in kept + [1, 5, 5]]


def test_prune_never_orphans_a_face_and_keeps_its_most_opaque_gaussian():
    model = _model(n=8, n_faces=4)                    # Gaussian i sits on face i % 4
    best = [4, 1, 6, 3]                               # per face, the most opaque (first or second of its two)
    with torch.no_grad():
        model.params["opacities"][:] = -20.0          # everything under the prune threshold
        model.params["opacities"][best] = torch.tensor([-10.0, -12.0, -11.0, -13.0])
    expected_means = model.params["means"][best].detach().clone()
    opts = _optimizers(model)
    strategy = BindingDensifyStrategy(refine_start=0, refine_every=1, reset_opacity_every=0)
    state = strategy.initialize_state(model)
    meta = _meta_with_grad(model, [])
    strategy.step_post_backward(model, opts, state, step=1, meta=meta, world_scales=torch.full((8, 3), 1e-3),
                                head_size=1.0, n_faces=4)
    assert model.count == 4
    assert model.binding.tolist() == [1, 3, 0, 2]     # the survivors, in their original order 1, 3, 4, 6
    order = torch.argsort(model.binding)
    # the one kept per face is that face's most opaque Gaussian, not merely some Gaussian of it
    torch.testing.assert_close(model.params["means"][order].detach(), expected_means)
    torch.testing.assert_close(model.params["opacities"][order].detach(), torch.tensor([-10.0, -12.0, -11.0, -13.0]))


def test_keep_one_per_face_picks_highest_score_and_breaks_ties():
    binding = torch.tensor([0, 0, 1, 1, 2])
    score = torch.tensor([0.1, 0.3, 0.2, 0.2, 0.9])
    remove = torch.tensor([True, True, True, True, False])
    kept = ~keep_one_per_face(remove, score, binding, n_faces=4)
    assert kept.tolist() == [False, True, True, False, True]


def test_growth_respects_max_count():
    model = _model(n=10, n_faces=2)
    opts = _optimizers(model)
    strategy = BindingDensifyStrategy(refine_start=0, refine_every=1, prune_opacity=0.0, reset_opacity_every=0,
                                      max_count=13)
    state = strategy.initialize_state(model)
    meta = _meta_with_grad(model, list(range(10)))
    meta["means2d"].grad[0, :, 0] = torch.arange(10, dtype=torch.float32) + 1
    strategy.step_post_backward(model, opts, state, step=1, meta=meta, world_scales=torch.full((10, 3), 1e-4),
                                head_size=1.0, n_faces=2)
    assert model.count == 13
