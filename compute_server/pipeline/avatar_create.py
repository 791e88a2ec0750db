"""The ``avatar.create`` job: photos -> fitted head -> training views -> Gaussians -> avatar.

Reads top to bottom like the method: prepare the photos (crop, matte, landmarks), fit the
head model, build the training views (the photos, their mirror images, and novel views
from the chosen synthesizer), initialize and optimize the Gaussians (with the denoising
prior when a diffusion model is chosen), then save the avatar folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from shared.splat_format import EXPRESSION_COLOUR_FIELD, EXPRESSION_COLOUR_FILE

from ..errors import UserError
from ..face import prepare_portrait
from ..tracking.portrait_fit import fit_portraits
from ..training.init import initialize_splats
from ..training.optimize import optimize_splats
from ..validation import require_float, require_image, require_int, require_list, require_str, require_video
from ..views.records import TrainingView
from ..views.reprojection import mirrored_view
from ..views.sampling import fixed_ring, head_centre
from ..views.shading import relit_faces
from ..views.synthesis import ReprojectionSynthesizer, SynthesisInput, synthesis_input
from .avatar_files import png_bytes, rig_arrays
from .hair_shells import with_hair_shell
from .photo_frames import photo_view, posed_vertices
from .presets import PRESETS, preset as make_preset
from .previews import contact_sheet, render_rgba

IMAGE_FORMATS = ("png", "jpeg", "webp", "bmp", "tiff", "mpo")
MAX_IMAGES = 8
STAGES = (("prepare", 0.0, 0.04), ("fit", 0.04, 0.12), ("views", 0.12, 0.18), ("optimize", 0.18, 0.96),
          ("save", 0.96, 1.0))


@dataclass
class AvatarRequest:
    """A validated avatar.create request (bytes are copied out of the message)."""

    images: list[tuple[str, bytes]]
    name: str
    preset: str
    seed: int
    diffusion: str
    head_model: str
    iterations: int | None = None
    image_size: int | None = None
    video: tuple[str, bytes] | None = None
    holdout: float = 0.0                # video only: the clip's last fraction is not trained on
    train_frames: int | None = None     # video only: cap on the frames learned from (preset's otherwise)
    warnings: list[str] = field(default_factory=list)


def validate(params: dict, ctx, services) -> AvatarRequest:
    """Quick checks on the network thread: every problem a user can fix is refused here."""
    images = []
    if params.get("video") is not None:
        video_input = require_video(params)
    else:
        video_input = None
        for i, item in enumerate(require_list(params, "images", max_items=MAX_IMAGES)):
            where = f"params.images[{i}]"
            if not isinstance(item, dict):
                raise UserError("bad_request", f"{where} must be a map with 'name' and 'data'")
            checked = require_image(item, "data", ctx.limits, where=where, formats=IMAGE_FORMATS)
            images.append((require_str(item, "name", default=f"image{i + 1}", max_chars=255, where=where),
                           bytes(checked.data)))
        if not images:
            raise UserError("bad_request", "params.images is empty; send at least one photo of the face")
    preset_name = require_str(params, "preset", default="standard", choices=tuple(PRESETS))
    head_model = require_str(params, "head_model", default="builtin", max_chars=200)
    services.head_models.check(head_model)
    diffusion = require_str(params, "diffusion", default="none", max_chars=200)
    if diffusion != "none":
        services.diffusion_check(diffusion)
    options = params.get("options")
    options = {} if options is None else options  # not `or`: an array has no truth value
    if not isinstance(options, dict):
        raise UserError("bad_request", f"params.options must be a map, got {type(options).__name__}")
    return AvatarRequest(
        images=images, video=video_input,
        name=require_str(params, "name", default="", max_chars=200),
        preset=preset_name, seed=require_int(params, "seed", default=0, min_value=0, max_value=2**31 - 1),
        diffusion=diffusion, head_model=head_model,
        iterations=require_int(options, "iterations", default=None, min_value=1, max_value=100_000,
                               where="params.options"),
        image_size=require_int(options, "image_size", default=None, min_value=64, max_value=2048,
                               where="params.options"),
        holdout=require_float(options, "holdout", default=0.0, min_value=0.0, max_value=0.9, where="params.options"),
        train_frames=require_int(options, "train_frames", default=None, min_value=1, max_value=2000,
                                 where="params.options"))


def summarize(req: AvatarRequest) -> dict:
    return {"images": [name for name, _ in req.images] or [req.video[0] if req.video else ""],
            "name": req.name, "preset": req.preset, "seed": req.seed, "diffusion": req.diffusion,
            "head_model": req.head_model}


class _Stages:
    """Maps each stage's own 0..1 progress onto the job's overall fraction, and times stages."""

    def __init__(self, ctx, stages=STAGES):
        self.ctx = ctx
        self.stages = stages
        self.timings: dict[str, float] = {}
        self._current = None
        self._started = 0.0

    def begin(self, name: str, message: str) -> None:
        self._finish()
        self._current, self._started = name, time.perf_counter()
        self.report(0.0, message)

    def report(self, fraction: float, message: str, **extra) -> None:
        lo, hi = next((lo, hi) for n, lo, hi in self.stages if n == self._current)
        self.ctx.progress(self._current, lo + (hi - lo) * min(max(fraction, 0.0), 1.0), message, **extra)

    def _finish(self) -> None:
        if self._current is not None:
            self.timings[self._current] = round(time.perf_counter() - self._started, 3)

    def done(self) -> dict:
        self._finish()
        self._current = None
        return self.timings


def run(ctx, req: AvatarRequest, services) -> dict:
    if req.video is not None:  # a clip: every good frame trains (GAF's monocular setting)
        from .video_avatar import run_clip
        return run_clip(ctx, req, services)
    stages = _Stages(ctx)
    device = ctx.device
    preset = make_preset(req.preset, iterations=req.iterations, image_size=req.image_size)
    head_model = services.head_models.load(req.head_model, device)

    stages.begin("prepare", "reading the photos")
    portraits = _prepare(req, preset.image_size, stages)
    warnings = [w for p in portraits for w in p.warnings]

    stages.begin("fit", "fitting the head model")
    fit = fit_portraits(head_model, portraits, settings=preset.fit,
                        progress=lambda f, m: stages.report(f, f"fitting: {m}"))
    head_model, _ = with_hair_shell(head_model, portraits[0], fit)   # scalp and neck to the (first) photo's outline
    if len(portraits) > 1:  # several photos of one person: each is a frame of the clip path
        from .photo_frames import photo_training_frames
        from .video_avatar import clip_settings, train_on_frames

        frames = photo_training_frames(head_model, portraits, fit)
        return train_on_frames(ctx, req, services, stages, preset, clip_settings(req.preset), head_model, frames,
                               unit="photos")
    stages.begin("views", "building training views")
    views, synthesis = _training_views(head_model, portraits, fit, preset, req, ctx, stages, services)

    stages.begin("optimize", "optimizing the Gaussians")
    main = synthesis
    model = initialize_splats(main.vertices, main.faces, main.face_region, main.region_names,
                              main.vertex_colors.colors, preset.init, np.random.default_rng(req.seed),
                              photo=main.image, photo_matte=main.matte, photo_camera=main.camera,
                              photo_surface=main.surface, fill=main.surface_colours)
    model.params = model.params.to(device)
    model.binding = model.binding.to(device)
    prior = services.diffusion_prior(req.diffusion, device, req.seed) if req.diffusion != "none" else None
    started = time.perf_counter()

    def on_progress(fraction: float, message: str, preview: bytes | None) -> None:
        elapsed = time.perf_counter() - started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.02 else None
        extra = {"preview_png": preview} if preview else {}
        stages.report(fraction, message, eta_s=eta, **extra)

    try:
        result = optimize_splats(model, head_model, views, preset.optimize, seed=req.seed, progress=on_progress,
                                 prior=prior, check_cancel=ctx.check)
    finally:  # free the diffusion weights unless the models config keeps them warm
        services.release_diffusion(req.diffusion, device)

    stages.begin("save", "saving the avatar")
    avatar_id = _save(ctx, req, preset, head_model, portraits, fit, result, synthesis, warnings, stages)
    timings = stages.done()
    return job_result(req, avatar_id, result, timings, warnings)


def job_result(req: AvatarRequest, avatar_id: str, result, timings: dict, warnings: list[str]) -> dict:
    """What every avatar.create job answers (photo, photos or clip; the clip path adds to it)."""
    return {"avatar": avatar_id, "name": req.name, "splats": result.model.count,
            "metrics": {k: round(float(v), 4) for k, v in result.metrics.items()},
            "timings_s": timings, "warnings": warnings}


def _prepare(req: AvatarRequest, size: int, stages: _Stages) -> list:
    if req.video is not None:
        from .video_frames import portrait_frames_from_video
        return portrait_frames_from_video(req.video, size, progress=lambda f, m: stages.report(f, m))
    portraits = []
    for i, (name, data) in enumerate(req.images):
        portraits.append(prepare_portrait(data, name, size=size))
        stages.report((i + 1) / len(req.images), f"prepared {name}")
    return portraits


def _training_views(head_model, portraits, fit, preset, req, ctx, stages, services) -> tuple[list[TrainingView], SynthesisInput]:
    """The photos (with their fitted params), their mirrors, and the synthesized novel views."""
    faces = head_model.faces.cpu().numpy()
    face_region = head_model.face_region.cpu().numpy()
    views, main = [], None
    rest = posed_vertices(head_model, {**fit.head_params(0), "expr": np.zeros(head_model.n_expr, np.float32),
                                        "jaw_pose": np.zeros(3, np.float32), "eyes_pose": np.zeros(6, np.float32)})
    for i, portrait in enumerate(portraits):
        photo, vertices, surface = photo_view(head_model, portrait, fit, i)
        params, camera = photo.head_params, photo.camera
        if main is None:
            main = synthesis_input(portrait.image, photo.mask, camera, params, vertices, rest, faces, face_region,
                                   head_model.region_names, head_model.expression_names, seed=req.seed,
                                   surface=surface, colour_matte=portrait.matte,
                                   valid=getattr(portrait, "valid", None))
        relit = surface.mask & relit_faces(face_region, head_model.region_names)[np.maximum(surface.face_ids, 0)]
        views += [photo, mirrored_view(photo, head_model.expression_names, preset.mirror_weight,
                                       main.shading if i == 0 else None, relit)]
    cameras = [c for _, _, c in fixed_ring(main.camera, head_centre(main.vertices),
                                           include_back=preset.include_back_views)]
    synthesizer = (ReprojectionSynthesizer() if req.diffusion == "none"
                   else services.diffusion_synthesizer(req.diffusion, ctx.device))
    views += synthesizer.synthesize(main, cameras, weight=preset.novel_view_weight,
                                    progress=lambda f, m: (ctx.check(), stages.report(f, m)))
    if req.diffusion == "none" and preset.hidden_part_views:
        views += hidden_part_views(head_model, main, preset.novel_view_weight)
    if req.diffusion != "none" and hasattr(synthesizer, "synthesize_targets"):
        # GeoDiff4D's expression variations: the same identity with the jaw open, smiling,
        # eyes closed, seen from a few of the novel cameras
        from ..diffusion.variations import expression_targets

        targets = expression_targets(head_model, main, cameras[:4])
        views += synthesizer.synthesize_targets(main, targets, weight=preset.novel_view_weight,
                                                progress=lambda f, m: (ctx.check(), stages.report(f, m)))
    return views, main


HIDDEN_PART_VARIANTS = ("jaw_open", "jaw_half_open", "eyes_left", "eyes_right")
HIDDEN_PART_CAMERAS = ((-25.0, -5.0), (25.0, -5.0))   # (azimuth, elevation) besides the photo's own camera


def hidden_part_views(head_model, main: SynthesisInput, weight: float) -> list[TrainingView]:
    """The photo's head with the jaw opened and the eyes turned, seen by the photo's camera
    and two beside it, painted by the baseline's reprojection carried over to the posed mesh
    (``diffusion.variations``): what the photo saw keeps its colour, the cavity, tongue,
    teeth and the eyeball under the lids get their completed colours. Without them no
    training view shows those parts: their Gaussians are never fitted to anything, and
    nothing keeps the lips' and lids' Gaussians from hanging over the opening."""
    from ..diffusion.variations import baseline_at, expression_targets, reprojected_variant_view
    from ..views.sampling import orbit_like

    centre = head_centre(main.vertices)
    cameras = [main.camera] + [orbit_like(main.camera, centre, az, el) for az, el in HIDDEN_PART_CAMERAS]
    bases = {id(camera): baseline_at(main, camera) for camera in cameras}   # one per camera, not per variant
    targets = expression_targets(head_model, main, cameras, variants=HIDDEN_PART_VARIANTS)
    return [reprojected_variant_view(main, target, weight, bases[id(target.camera)]) for target in targets]


def _save(ctx, req, preset, head_model, portraits, fit, result, main: SynthesisInput, warnings, stages,
          extra: dict | None = None) -> str:
    model = result.model
    local = model.to_local_splats()
    tuned = result.head_params
    fit_arrays = {key: np.stack([np.asarray(p[key], np.float32).reshape(-1) for p in tuned])
                  for key in ("expr", "jaw_pose", "neck_pose", "eyes_pose")}
    preview = render_rgba(model, head_model, tuned[0], main.camera)
    sheet = contact_sheet(model, head_model, tuned[0], main.camera, main.vertices, count=8, size=192)
    info = head_model.describe()
    metadata = {
        "name": req.name,
        "head_model": {"name": req.head_model, "n_shape": head_model.n_shape, "n_expr": head_model.n_expr,
                       "expression_names": list(head_model.expression_names),
                       "joint_names": list(head_model.joint_names), "region_names": list(head_model.region_names),
                       "source": info.get("source_path") or info.get("source", ""),
                       "sha256": head_model.source_sha256 or ""},
        "sh_degree": model.sh_degree,
        "counts": {"splats": model.count, "vertices": head_model.n_verts, "faces": head_model.n_faces},
        "portrait_camera": main.camera.to_wire(),
        "preset": req.preset, "seed": req.seed, "diffusion": req.diffusion,
        "config": {"preset": preset.to_config()},
        "sources": [{"name": p.name, "sha256": p.source_sha256, "source_size": [int(x) for x in p.source_size],
                     "crop_to_source": [float(x) for x in np.asarray(p.crop_to_source).reshape(-1)],
                     "camera": fit.images[i].camera.to_wire()}
                    for i, p in enumerate(portraits)],
        "fit": fit.summary(),
        "metrics": {k: float(v) for k, v in result.metrics.items()},
        "timings_s": dict(stages.timings),
        "warnings": warnings,
        **(extra or {}),
    }
    with ctx.store.begin() as writer:
        writer.write("splats.npz", local.arrays())
        if local.expression_colour is not None:
            writer.write(EXPRESSION_COLOUR_FILE, {EXPRESSION_COLOUR_FIELD: local.expression_colour})
        writer.write("rig.npz", rig_arrays(head_model, fit.shape))
        writer.write("fit.npz", fit_arrays)
        writer.write("preview.png", png_bytes(preview))
        writer.write("turntable.png", png_bytes(sheet))
        stages.report(0.8, "writing the avatar")
        writer.commit(metadata)
    return writer.avatar_id
