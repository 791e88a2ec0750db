"""The trainable Gaussians of an avatar: parameters in triangle-local frames plus binding.

Parameter names follow gsplat's strategy conventions ("means", "scales", "quats",
"opacities", "sh0", "shN") so ``gsplat.strategy.ops`` can clone, split and prune them
while keeping the optimizers' moments in sync; the triangle binding rides along as
strategy state and is inherited by every child Gaussian.
"""

from __future__ import annotations

import numpy as np
import torch

from shared.splat_format import JAW_CODE_SCALE, LocalSplats

from .binding import PosedSplats, pose_splats


class SplatModel:
    """Gaussians bound to the faces of a head mesh.

    params: ParameterDict of
      means (N, 3) local, scales (N, 3) log local, quats (N, 4) wxyz,
      opacities (N,) logits, sh0 (N, 1, 3), shN (N, K-1, 3)
    binding: (N,) long, the parent triangle of each Gaussian.
    Optional: expression_colour (N, C, 3), how sh0 moves with the expression code
    (``shared.splat_format.EXPRESSION_COLOUR_FIELD``; ``expression_code`` below).
    """

    PARAM_NAMES = ("means", "scales", "quats", "opacities", "sh0", "shN")

    def __init__(self, params: torch.nn.ParameterDict, binding: torch.Tensor, sh_degree: int):
        missing = [n for n in self.PARAM_NAMES if n not in params]
        if missing:
            raise ValueError(f"splat parameters missing: {missing}")
        self.params = params
        self.binding = binding.long()
        self.sh_degree = int(sh_degree)

    @property
    def count(self) -> int:
        return int(self.params["means"].shape[0])

    @property
    def device(self) -> torch.device:
        return self.params["means"].device

    @classmethod
    def from_tensors(cls, *, means, scales, quats, opacities, sh0, shN, binding, sh_degree, requires_grad=True,
                     expression_colour=None):
        named = [("means", means), ("scales", scales), ("quats", quats), ("opacities", opacities), ("sh0", sh0),
                 ("shN", shN)] + ([("expression_colour", expression_colour)] if expression_colour is not None else [])
        params = torch.nn.ParameterDict({
            name: torch.nn.Parameter(t.detach().clone().float().contiguous(), requires_grad=requires_grad)
            for name, t in named})
        return cls(params, binding.detach().clone(), sh_degree)

    @property
    def has_expression_colour(self) -> bool:
        return "expression_colour" in self.params

    def add_expression_colour(self, code_size: int) -> None:
        """Give every Gaussian a zero expression colour over a code of ``code_size`` (the
        avatar looks the same until it is trained)."""
        self.params["expression_colour"] = torch.nn.Parameter(
            torch.zeros(self.count, code_size, 3, device=self.device))

    def expression_dc(self, code: torch.Tensor) -> torch.Tensor:
        """(N, 3) how far each Gaussian's sh0 moves at expression ``code`` (C,)."""
        return torch.einsum("nck,c->nk", self.params["expression_colour"], code)

    def pose(self, vertices: torch.Tensor, faces: torch.Tensor) -> PosedSplats:
        """Head-space Gaussians for each of B posed meshes ``vertices`` (B, V, 3)."""
        p = self.params
        return pose_splats(p["means"], p["quats"], p["scales"], self.binding, vertices, faces)

    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.params["opacities"])

    def sh_coeffs(self, code: torch.Tensor | None = None) -> torch.Tensor:
        """(N, K, 3) all SH coefficients (DC first), at expression ``code`` (C,) when the
        model has an expression colour (None: the neutral colours)."""
        sh0 = self.params["sh0"]
        if code is not None and self.has_expression_colour:
            sh0 = sh0 + self.expression_dc(code)[:, None]
        return torch.cat([sh0, self.params["shN"]], dim=1)

    # ---- conversion to / from the stored format ---------------------------------------
    def to_local_splats(self) -> LocalSplats:
        p = {k: v.detach().cpu() for k, v in self.params.items()}
        return LocalSplats(
            means_local=p["means"].numpy(),
            log_scales_local=p["scales"].numpy(),
            quats_local=torch.nn.functional.normalize(p["quats"], dim=-1).numpy(),
            opacity_logits=p["opacities"].numpy(),
            sh_dc=p["sh0"][:, 0].numpy(),
            sh_rest=p["shN"].numpy(),
            binding=self.binding.cpu().numpy().astype(np.int32),
            expression_colour=p["expression_colour"].numpy() if "expression_colour" in p else None,
        )

    @classmethod
    def from_local_splats(cls, splats: LocalSplats, device=None, requires_grad=False) -> "SplatModel":
        t = lambda a: torch.as_tensor(np.asarray(a), device=device)  # noqa: E731
        return cls.from_tensors(
            means=t(splats.means_local), scales=t(splats.log_scales_local), quats=t(splats.quats_local),
            opacities=t(splats.opacity_logits), sh0=t(splats.sh_dc)[:, None], shN=t(splats.sh_rest),
            binding=t(splats.binding).long(), sh_degree=splats.sh_degree, requires_grad=requires_grad,
            expression_colour=None if splats.expression_colour is None else t(splats.expression_colour))


def expression_code(expr: torch.Tensor, jaw_pose: torch.Tensor) -> torch.Tensor:
    """(..., E + 3) the expression colour's code of (..., E) expression weights and (..., 3)
    jaw rotations (``shared.splat_format.expression_code``), detached: the colour term
    never pulls on a frame's tracked expression."""
    return torch.cat([expr.detach(), JAW_CODE_SCALE * jaw_pose.detach()], dim=-1).float()
