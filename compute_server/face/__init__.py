"""Portrait and video-frame preprocessing: decode, detect, crop, matte, landmarks.

Public API (see docs/preprocessing.md for the crop convention and the records):

- ``decode_image(data, name)`` / ``decode_image_with_alpha`` -- bytes -> upright RGB.
- ``prepare_portrait(data, name, size=512)`` -> ``PreparedPortrait``.
- ``FaceLandmarker(static_image_mode=..., max_faces=4).detect(rgb)`` -> ``[FaceDetection]``.
- ``probe_video(path)`` -> ``VideoInfo``; ``iter_video_frames(path)`` -> ``VideoFrame``s.
- ``track_video_landmarks(path)`` -> ``VideoLandmarks``; ``fill_missing(landmarks, found)``.

MediaPipe loads only when a landmarker or segmenter is first created.
"""

from .align import DEFAULT_MARGIN, crop_to_source_transform, face_geometry
from .decode import DecodedImage, decode_image, decode_image_with_alpha
from .landmarker import FaceDetection, FaceLandmarker
from .portrait import PreparedPortrait, prepare_portrait
from .thread_cache import close_thread_resources
from .video import VideoFrame, VideoInfo, iter_video_frames, probe_video
from .video_landmarks import VideoLandmarks, fill_missing, track_video_landmarks

__all__ = [
    "DEFAULT_MARGIN",
    "DecodedImage",
    "FaceDetection",
    "FaceLandmarker",
    "PreparedPortrait",
    "VideoFrame",
    "VideoInfo",
    "VideoLandmarks",
    "close_thread_resources",
    "crop_to_source_transform",
    "decode_image",
    "decode_image_with_alpha",
    "face_geometry",
    "fill_missing",
    "iter_video_frames",
    "prepare_portrait",
    "probe_video",
    "track_video_landmarks",
]
