"""``avatar.create`` from a selfie clip (GAF's monocular setting): every good frame trains.

Reads top to bottom like GAF section 5 / GaussianAvatars on a monocular video:
1. track the clip once (the motion.track machinery: one identity, per-frame expression,
   jaw, eyes and head pose);
2. keep the frames where tracking is good, spread over the clip, and decode and crop them
   once at training size (tracking.frame_selection, face.clip_crops);
3. one training view per kept frame, its head pose folded into its camera (the avatar
   stays at the origin, as in the photo path) and its own tracked parameters;
4. completion views from the single-photo machinery around the most frontal frame,
   weighted down wherever real frames saw the surface, so they speak only where the clip
   is silent;
5. the Gaussians trained on all of them with per-frame refinement of expression, jaw,
   eyes, rotation and translation at GAF's small learning rates;
6. saved like any avatar (avatar_create._save), with the split and frame counts.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from shared.camera import Camera
from shared.rotations import axis_angle_to_matrix

from ..errors import UserError
from ..face import thread_cache
from ..face.clip_crops import ClipCrop, crop_clip_frames
from ..face.matte import foreground_colours, portrait_matte
from ..face.video import probe_video
from ..face.video_landmarks import fill_missing, missing_ranges, track_video_landmarks
from ..head.model import HeadParams
from ..tracking.frame_selection import FrameQuality, select_frames
from ..tracking.video_track import track_landmarks
from ..training.init import initialize_splats
from ..training.optimize import optimize_splats
from ..views.real_views import real_view
from ..views.records import TrainingView
from ..views.sampling import fixed_ring, head_centre
from ..views.surface import render_surface
from ..views.synthesis import ReprojectionSynthesizer, SynthesisInput, synthesis_input

CLIP_STAGES = (("track", 0.0, 0.3), ("frames", 0.3, 0.36), ("views", 0.36, 0.4), ("optimize", 0.4, 0.97),
               ("save", 0.97, 1.0))
TRAIN_FRAMES = {"draft": 150, "standard": 300, "high": 400}
MAX_TRACKED_FRAMES = 600   # longer clips are cut to their first frames (20 s at 30 fps)
HELDOUT_FRAMES = 16        # held-out frames scored after training (spread over the test part)
FEW_FRAMES = 10             # fewer usable frames than this: warn that the avatar is photo-like
# The expression colour learns how colour changes with the expression; below this many real
# views (a few photos) it would only learn each view's own colours by heart.
EXPRESSION_COLOUR_MIN_VIEWS = 20


@dataclass
class ClipSettings:
    """How a clip becomes training data; saved with the avatar."""

    train_frames: int = 150             # at most this many frames, one per equal stretch of the clip
    max_tracked_frames: int = MAX_TRACKED_FRAMES
    holdout: float = 0.0                # the last fraction of the clip is not trained on (testing)
    input_probability: float = 0.8      # share of iterations on clip frames (the rest: completion views)
    seen_weight: float = 0.2            # completion views' weight where >= seen_full frames saw the surface
    seen_full: int = 3
    lr_translation: float = 1e-6        # GAF section 5: per-frame refinement
    lr_joints: float = 1e-5
    lr_expr: float = 1e-3
    # the expression-dependent colour's weight (optimize.OptimizeSettings.expression_colour_weight),
    # used where at least EXPRESSION_COLOUR_MIN_VIEWS real views train
    expression_colour_weight: float = 1.0


@dataclass
class ClipFrameSource:
    """What avatar metadata records of each training frame (the photo path's 'sources')."""

    name: str
    source_sha256: str
    source_size: tuple[int, int]
    crop_to_source: np.ndarray
    warnings: list[str] = field(default_factory=list)


@dataclass
class ClipFrameFit:
    camera: Camera
    median_error_px: float


@dataclass
class ClipFit:
    """The clip's tracking in the shape avatar_create._save reads from a PortraitFit."""

    head_model: dict
    shape: np.ndarray
    images: list[ClipFrameFit]

    def summary(self) -> dict:
        errors = [i.median_error_px for i in self.images]
        return {"head_model": self.head_model.get("name", ""), "tracked": "video",
                "median_landmark_error_px": round(float(np.nanmedian(errors)), 3) if errors else None,
                "focal_px": round(self.images[0].camera.fx, 2) if self.images else None}


@dataclass
class ClipFrames:
    """The real views of one person as training views (the main, most frontal one first) and
    what the report needs: a clip's kept frames, or several photos (pipeline/photo_frames.py).

    sources, fit: what avatar_create._save records (ClipFrameSource / ClipFit for a clip, the
    PreparedPortraits and their PortraitFit for photos), in the order of ``views``.
    """

    views: list[TrainingView]
    sources: list
    fit: object
    seen_faces: np.ndarray          # (F,) in how many kept frames each triangle was seen
    report: dict
    warnings: list[str]
    test_views: list[TrainingView] = field(default_factory=list)   # held-out frames (tracked params, not trained)
    is_clip: bool = True


def clip_settings(preset_name: str, holdout: float = 0.0, train_frames: int | None = None) -> ClipSettings:
    return ClipSettings(train_frames=train_frames or TRAIN_FRAMES.get(preset_name, 150), holdout=holdout,
                        max_tracked_frames=MAX_TRACKED_FRAMES)


def run_clip(ctx, req, services) -> dict:
    """The whole job for a video request (see the module docstring)."""
    from .avatar_create import _Stages
    from .presets import preset as make_preset

    stages = _Stages(ctx, CLIP_STAGES)
    preset = make_preset(req.preset, iterations=req.iterations, image_size=req.image_size)
    settings = clip_settings(req.preset, req.holdout, req.train_frames)
    head_model = services.head_models.load(req.head_model, ctx.device)
    name, data = req.video
    path = ctx.output_dir / (re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "clip.mp4")
    path.write_bytes(data)
    try:
        stages.begin("track", f"tracking the face in {name}")
        frames, head_model = clip_training_frames(str(path), name, data, head_model, preset.image_size, settings,
                                                  stages, ctx)
    finally:
        path.unlink(missing_ok=True)
    return train_on_frames(ctx, req, services, stages, preset, settings, head_model, frames, unit="frames")


def train_on_frames(ctx, req, services, stages, preset, settings: ClipSettings, head_model, frames: ClipFrames,
                    unit: str) -> dict:
    """Steps 4-6 for any set of real views of one person, each with its own parameters: the
    frames of a clip, or several photos (``unit`` names them in messages). Completion views
    speak only where the real views are silent; each view's parameters are refined."""
    from .avatar_create import _save, job_result

    warnings = frames.warnings
    stages.begin("views", f"learning from {len(frames.views)} {unit}; completion views for the rest")
    main, completion = completion_views(head_model, frames, preset, req, ctx, stages, services, settings)

    n_train = len(frames.views)
    stages.begin("optimize", f"optimizing the Gaussians on {n_train} {unit}")
    if frames.is_clip:
        stages.report(0.0, f"learning from {n_train} frames of {frames.report['frames']}", train_frames=n_train)
    model = initialize_splats(main.vertices, main.faces, main.face_region, main.region_names,
                              main.vertex_colors.colors, preset.init, np.random.default_rng(req.seed),
                              photo=main.image, photo_matte=main.matte, photo_camera=main.camera,
                              photo_surface=main.surface, fill=main.surface_colours)
    model.params = model.params.to(ctx.device)
    model.binding = model.binding.to(ctx.device)
    optimize = replace(preset.optimize, refine_pose=True, lr_translation=settings.lr_translation,
                       lr_joints=settings.lr_joints, lr_expr=settings.lr_expr,
                       input_probability=settings.input_probability, mirror_probability=0.0,
                       expression_colour_weight=(settings.expression_colour_weight
                                                 if n_train >= EXPRESSION_COLOUR_MIN_VIEWS else 0.0))
    prior = services.diffusion_prior(req.diffusion, ctx.device, req.seed) if req.diffusion != "none" else None
    started = time.perf_counter()

    def on_progress(fraction: float, message: str, preview: bytes | None) -> None:
        elapsed = time.perf_counter() - started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.02 else None
        stages.report(fraction, f"{message} ({n_train} {unit})", eta_s=eta,
                      **({"preview_png": preview} if preview else {}))

    try:
        result = optimize_splats(model, head_model, frames.views + completion, optimize, seed=req.seed,
                                 progress=on_progress, prior=prior, check_cancel=ctx.check,
                                 preview_view=_preview_frame(frames) if frames.is_clip else None)
    finally:
        services.release_diffusion(req.diffusion, ctx.device)

    stages.begin("save", "saving the avatar")
    if not frames.is_clip:
        avatar_id = _save(ctx, req, preset, head_model, frames.sources, frames.fit, result, main, warnings, stages,
                          extra={"photos": {"count": n_train, "main": frames.views[0].name,
                                            "settings": asdict(settings)}})
        return job_result(req, avatar_id, result, stages.done(), warnings)
    clip_report = {**frames.report, "settings": asdict(settings)}
    strip = None
    if frames.test_views:
        heldout, strip = heldout_metrics(result.model, head_model, frames.test_views)
        clip_report["heldout"] = heldout
    avatar_id = _save(ctx, req, preset, head_model, frames.sources, frames.fit, result, main, warnings, stages,
                      extra={"clip": clip_report})
    return {**job_result(req, avatar_id, result, stages.done(), warnings), "train_frames": n_train,
            "split": clip_report["split"], "clip": {k: v for k, v in clip_report.items() if k != "settings"},
            **({"heldout_strip_png": strip} if strip is not None else {})}


def _preview_frame(frames: ClipFrames) -> TrainingView:
    """The frame the progress previews show beside its render: the middle held-out frame when
    the clip keeps some out of training (the honest check), else the middle training frame."""
    pool = frames.test_views or frames.views
    return pool[len(pool) // 2]


def clip_training_frames(path: str, name: str, data: bytes, head_model, size: int, settings: ClipSettings,
                         stages, ctx) -> tuple[ClipFrames, object]:
    """Track the clip, choose frames, crop them, fit the scalp to the lead frame's outline and
    make one TrainingView each. -> (the frames, the head model with its hair shell)"""
    import hashlib

    warnings: list[str] = []
    info = probe_video(path)
    max_frames = None
    if info.n_frames > settings.max_tracked_frames:
        max_frames = settings.max_tracked_frames
        warnings.append(f"{name} has about {info.n_frames} frames ({info.duration_s:.0f} s); only the first "
                        f"{max_frames} ({max_frames / max(info.fps, 1e-6):.0f} s) are used. Trim the clip to the "
                        "part you want the avatar to learn from.")
    landmarks = track_video_landmarks(path, max_frames=max_frames, check_cancel=ctx.check,
                                      progress=lambda f, m: stages.report(0.4 * f, m))
    n = landmarks.n_frames
    if n < 2:
        warnings.append(f"{name} has a single frame: the avatar learns from it like from one photo.")
    track = track_landmarks(head_model, landmarks.landmarks[..., :2], landmarks.found, landmarks.frame_size,
                            landmarks.fps, progress=lambda f, m: stages.report(0.4 + 0.6 * f, f"tracking: {m}"))
    points = np.where(landmarks.found[:, None, None], landmarks.landmarks[..., :2], 0.0)
    face_px = np.where(landmarks.found, (points.max(axis=1) - points.min(axis=1)).max(axis=-1), np.nan)
    quality = FrameQuality(found=landmarks.found, error_px=track.frame_error_px, face_px=face_px)
    selection = select_frames(quality, settings.train_frames, holdout=settings.holdout)
    if not selection.bins:
        raise UserError("no_face", f"No frame of {name} is usable for an avatar: the face was not found or not "
                                   "tracked well enough in any frame. Film the face clearly, frontal or slightly "
                                   "turned, in good light.", name=name)
    gaps = [(a, b) for a, b in missing_ranges(landmarks.found) if b - a + 1 >= max(3, int(0.5 * landmarks.fps))]
    if gaps:
        shown = ", ".join(f"{a / landmarks.fps:.1f}-{(b + 1) / landmarks.fps:.1f} s" for a, b in gaps[:4])
        warnings.append(f"{name}: no face for long stretches ({shown}); those frames are skipped, the other "
                        f"{int(selection.usable.sum())} frames are used.")
    stages.begin("frames", "cropping the chosen frames")
    filled = fill_missing(landmarks.landmarks, landmarks.found)
    test = np.flatnonzero(selection.usable[selection.train_stop:]) + selection.train_stop
    test = test[np.unique(np.linspace(0, test.size - 1, num=min(test.size, HELDOUT_FRAMES)).round().astype(int))] \
        if test.size else test
    all_crops = crop_clip_frames(path, list(selection.bins) + [np.array([i]) for i in test], filled,
                                 landmarks.frame_size, size, max_frames=n, check_cancel=ctx.check,
                                 progress=lambda f, m: stages.report(0.5 * f, m))
    crops = [c for c in all_crops if c.index < selection.train_stop]
    test_crops = [c for c in all_crops if c.index >= selection.train_stop]
    if int(selection.usable.sum()) < FEW_FRAMES and n >= 2:
        warnings.append(f"{name}: only {int(selection.usable.sum())} usable frames; a clip of a few seconds with the face turning "
                        "a little left and right gives a better avatar.")
    head_model = clip_hair_shell(head_model, crops, track)
    frames = _frame_views(crops, track, head_model, name, hashlib.sha256(data).hexdigest(), landmarks.frame_size,
                          lambda f, m: stages.report(0.5 + 0.5 * f, m))
    if test_crops:
        frames.test_views = _frame_views(test_crops, track, head_model, name, "", landmarks.frame_size,
                                         lambda f, m: None).views
    stop = selection.train_stop
    frames.report = {
        "frames": n, "fps": landmarks.fps, "train_frames": len(crops),
        "train_frame_indices": [c.index for c in crops],
        "split": {"holdout": settings.holdout, "train": [0, stop], "test": [stop, n]},
        "skipped": selection.dropped, "missing_frames": int((~landmarks.found).sum()),
        "median_error_px": float(np.nanmedian(track.frame_error_px)) if landmarks.found.any() else None,
    }
    frames.warnings = warnings
    return frames, head_model


def _canonical_frames(crops: list[ClipCrop], track):
    """Each crop's canonical head parameters (head pose folded out: zero rotation and
    translation), its head rotation and translation, and the order with the most frontal
    frame first. -> (canonical {name: (K, ...)}, rotation (K, 3), translation (K, 3), order (K,))"""
    motion = track.motion
    idx = np.array([c.index for c in crops])
    rotation = motion.rotation[idx].astype(np.float64)
    translation = (motion.translation[idx] + track.translation_offset).astype(np.float64)
    # the most frontal frame first: it seeds the Gaussians' colours and the completion views
    order = np.argsort(np.linalg.norm(rotation, axis=1), kind="stable")
    order = np.concatenate([order[:1], np.setdiff1d(np.arange(len(crops)), order[:1])])
    canonical = {"shape": np.tile(motion.shape[None], (len(idx), 1)), "expr": motion.expr[idx],
                 "rotation": np.zeros((len(idx), 3), np.float32), "neck_pose": motion.neck_pose[idx],
                 "jaw_pose": motion.jaw_pose[idx], "eyes_pose": motion.eyes_pose[idx],
                 "translation": np.zeros((len(idx), 3), np.float32)}
    return canonical, rotation, translation, order


def _pose_canonical(head_model, canonical: dict) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (K, V, 3), root joints (K, 3)) float64 of the canonical heads."""
    with torch.no_grad():
        posed = head_model(HeadParams.from_numpy({k: np.asarray(v, np.float32) for k, v in canonical.items()},
                                                 device=head_model.faces.device))
    return posed.vertices.cpu().numpy().astype(np.float64), posed.joints[:, 0].cpu().numpy().astype(np.float64)


def clip_hair_shell(head_model, crops: list[ClipCrop], track):
    """The head model with its scalp and neck fitted to the outline of the clip's most
    frontal kept frame (``hair_shells``), as a photo's avatar gets it: the hair's volume beyond
    the built-in bald scalp, no crown standing above short hair, no neck wider or longer than
    the person's. The lead frame, because it
    shows the outline all round the top of the head and seeds the colours."""
    from .hair_shells import with_shell_from_view

    if not crops:
        return head_model
    canonical, rotation, translation, order = _canonical_frames(crops, track)
    lead = int(order[0])
    params = {key: np.asarray(value[lead], np.float32) for key, value in canonical.items()}
    _, roots = _pose_canonical(head_model, {k: v[lead:lead + 1] for k, v in canonical.items()})
    crop = crops[lead]
    camera = _frame_camera(track.camera, axis_angle_to_matrix(rotation[lead]), roots[0], translation[lead],
                           crop.crop_to_source, crop.image.shape[0])
    matte = portrait_matte(crop.image, crop.valid, thread_cache.portrait_segmenter()).matte
    shelled, _ = with_shell_from_view(head_model, params, camera, matte, crop.valid)
    return shelled


def _frame_views(crops: list[ClipCrop], track, head_model, name: str, sha256: str, frame_size, report) -> ClipFrames:
    """One TrainingView per crop: the head pose folded into the crop's camera (canonical head)."""
    canonical, rotation, translation, order = _canonical_frames(crops, track)
    vertices_all, roots = _pose_canonical(head_model, canonical)
    faces = head_model.faces.cpu().numpy()
    face_region = head_model.face_region.cpu().numpy()
    segmenter = thread_cache.portrait_segmenter()
    seen = np.zeros(len(faces), np.int64)
    views, sources, fits = [], [], []
    errors = track.frame_error_px
    for k, i in enumerate(order):
        crop = crops[i]
        camera = _frame_camera(track.camera, axis_angle_to_matrix(rotation[i]), roots[i], translation[i],
                               crop.crop_to_source, crop.image.shape[0])
        matte = portrait_matte(crop.image, crop.valid, segmenter).matte
        params = {key: np.asarray(value[i], np.float32) for key, value in canonical.items()}
        frame_name = f"{name} frame {crop.index}"
        view, surface = real_view(foreground_colours(crop.image.astype(np.float32) / 255.0, matte), matte, crop.valid,
                                  camera, vertices_all[i], faces, face_region, head_model.region_names, params,
                                  frame_name, meta={"frame": crop.index})
        views.append(view)
        seen_ids = surface.face_ids[surface.mask & (view.mask > 0.5)]
        seen[np.unique(seen_ids[seen_ids >= 0])] += 1
        sources.append(ClipFrameSource(name=frame_name, source_sha256=sha256, source_size=tuple(frame_size),
                                       crop_to_source=crop.crop_to_source))
        fits.append(ClipFrameFit(camera=camera, median_error_px=float(errors[crop.index])))
        if k % 5 == 0:
            report((k + 1) / len(crops), f"frame {k + 1} of {len(crops)}: mask and normals")
    fit = ClipFit(head_model=head_model.describe(), shape=np.asarray(track.motion.shape, np.float32), images=fits)
    return ClipFrames(views=views, sources=sources, fit=fit, seen_faces=seen, report={}, warnings=[])


def _frame_camera(video_camera: Camera, rotation: np.ndarray, root: np.ndarray, translation: np.ndarray,
                  crop_to_source: np.ndarray, size: int) -> Camera:
    """The crop's camera for a canonical head: video extrinsics after the frame's head pose
    (rotation (3, 3) about the root joint (3,), then translation (3,), metres), intrinsics
    of the axis-aligned crop (crop_to_source (3, 3), full-frame pixels)."""
    head_to_world = np.eye(4)
    head_to_world[:3, :3] = rotation
    head_to_world[:3, 3] = root - rotation @ root + translation
    scale = float(crop_to_source[0, 0])
    x0, y0 = float(crop_to_source[0, 2]), float(crop_to_source[1, 2])
    return Camera(video_camera.world_to_camera @ head_to_world, video_camera.fx / scale, video_camera.fy / scale,
                  (video_camera.cx - x0) / scale, (video_camera.cy - y0) / scale, size, size, near=0.01, far=100.0)


def completion_views(head_model, frames: ClipFrames, preset, req, ctx, stages, services,
                     settings: ClipSettings) -> tuple[SynthesisInput, list[TrainingView]]:
    """The single-photo completion around the main (most frontal) frame, weighted down where
    real frames saw the surface: per pixel 1 where no kept frame saw the triangle, falling to
    ``seen_weight`` once ``seen_full`` frames did; the view's weight scales with the mean."""
    photo = frames.views[0]
    faces = head_model.faces.cpu().numpy()
    face_region = head_model.face_region.cpu().numpy()
    params = photo.head_params
    with torch.no_grad():
        batch = {k: np.stack([np.asarray(params[k], np.float32)] * 2) for k in params}
        for key in ("expr", "jaw_pose", "eyes_pose"):
            batch[key][1] = 0.0
        posed = head_model(HeadParams.from_numpy(batch, device=head_model.faces.device)).vertices.cpu().numpy()
    vertices, rest = posed[0].astype(np.float64), posed[1].astype(np.float64)
    main = synthesis_input(photo.image, photo.mask, photo.camera, params, vertices, rest, faces, face_region,
                           head_model.region_names, head_model.expression_names, seed=req.seed,
                           valid=photo.loss_mask)   # a frame's loss mask is its photo pixels
    cameras = [c for _, _, c in fixed_ring(main.camera, head_centre(vertices), include_back=preset.include_back_views)]
    synthesizer = (ReprojectionSynthesizer() if req.diffusion == "none"
                   else services.diffusion_synthesizer(req.diffusion, ctx.device))
    views = synthesizer.synthesize(main, cameras, weight=preset.novel_view_weight,
                                   progress=lambda f, m: (ctx.check(), stages.report(f, m)))
    seen = np.clip(frames.seen_faces / max(settings.seen_full, 1), 0.0, 1.0)
    per_face = 1.0 - (1.0 - settings.seen_weight) * seen
    for view in views:
        down_weight_seen(view, vertices, faces, per_face)
    return main, views


def down_weight_seen(view: TrainingView, vertices: np.ndarray, faces: np.ndarray, per_face: np.ndarray) -> None:
    """Multiply ``view``'s loss mask by ``per_face`` (F,) at each pixel's visible triangle
    (1 off the mesh), and its weight by the mean change over the old mask."""
    surface = render_surface(vertices, faces, [view.camera])[0]
    pixel = np.where(surface.face_ids >= 0, per_face[np.maximum(surface.face_ids, 0)], 1.0).astype(np.float32)
    base = view.loss_mask if view.loss_mask is not None else np.ones_like(view.mask)
    weighted = base * pixel
    view.weight = float(view.weight * weighted.sum() / max(float(base.sum()), 1e-6))
    view.loss_mask = weighted


@torch.no_grad()
def heldout_metrics(model, head_model, views: list[TrainingView], strip_count: int = 6) -> tuple[dict, bytes]:
    """PSNR / SSIM of the trained avatar on held-out frames, each rendered with its tracked
    (never refined) parameters at its own camera, on the head's matte (alpha > 0.5), like
    optimize.evaluate_views; and a PNG strip of up to ``strip_count`` frames, real over render."""
    import io

    from PIL import Image

    from ..camera_torch import stack_cameras
    from ..splats.losses import masked_mean, psnr, ssim_map
    from ..splats.model import expression_code
    from ..splats.render_avatar import render_avatar

    device = model.device
    psnrs, ssims, tiles = [], [], []
    ordered = sorted(views, key=lambda v: v.meta.get("frame", 0))
    show = set(np.linspace(0, len(ordered) - 1, num=min(strip_count, len(ordered))).round().astype(int).tolist())
    for k, view in enumerate(ordered):
        params = HeadParams.from_numpy({n: np.asarray(v, np.float32)[None] for n, v in view.head_params.items()},
                                       device=device)
        vertices = head_model(params).vertices[0]
        viewmats, Ks = stack_cameras([view.camera], device=device)
        out = render_avatar(model, vertices, head_model.faces, viewmats, Ks, view.camera.width, view.camera.height,
                            colour_code=expression_code(params.expr[0], params.jaw_pose[0]))
        mask = torch.as_tensor(view.mask, device=device)[None]
        fg = (mask > 0.5).float()
        target = torch.as_tensor(view.image, device=device)[None] * mask[..., None]
        psnrs.append(psnr(out.rgb, target, fg))
        ssims.append(float(masked_mean(ssim_map(out.rgb, target), fg)))
        if k in show:
            tiles.append(np.concatenate([target[0].cpu().numpy(), out.rgb[0].clamp(0, 1).cpu().numpy()], axis=0))
    buf = io.BytesIO()
    Image.fromarray((np.concatenate(tiles, axis=1) * 255).round().astype(np.uint8)).save(buf, "PNG")
    frames = [int(v.meta.get("frame", -1)) for v in ordered]
    return ({"psnr_db": round(float(np.mean(psnrs)), 3), "ssim": round(float(np.mean(ssims)), 4),
             "frames": frames, "psnr_db_per_frame": [round(float(x), 2) for x in psnrs]}, buf.getvalue())
