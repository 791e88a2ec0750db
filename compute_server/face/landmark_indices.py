"""Named vertex indices of MediaPipe's 478-point face mesh (468 mesh + 10 iris points).

Copied as plain numbers so the alignment math runs without importing MediaPipe; a test
checks them against ``mediapipe.solutions.face_mesh_connections``. "Left" and "right" are
the subject's, as in MediaPipe: the subject's left eye appears on the image's right in a
frontal photo.
"""

from __future__ import annotations

N_LANDMARKS = 478
N_MESH_LANDMARKS = 468

LEFT_EYE = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
RIGHT_EYE = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
LEFT_IRIS_CENTER = 473
RIGHT_IRIS_CENTER = 468
LEFT_IRIS = (473, 474, 475, 476, 477)
RIGHT_IRIS = (468, 469, 470, 471, 472)
LEFT_EYEBROW = (276, 282, 283, 285, 293, 295, 296, 300, 334, 336)
RIGHT_EYEBROW = (46, 52, 53, 55, 63, 65, 66, 70, 105, 107)
MOUTH_LEFT_CORNER = 291
MOUTH_RIGHT_CORNER = 61
UPPER_LIP_TOP = 0
LOWER_LIP_BOTTOM = 17
NOSE_TIP = 1
CHIN = 152
FOREHEAD_TOP = 10
LIPS = (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191,
        267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415)
# The face outline as a closed loop, starting at the top of the forehead and going
# towards the subject's right (image left in a frontal photo).
FACE_OVAL = (10, 109, 67, 103, 54, 21, 162, 127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148,
             152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454, 356, 389, 251, 284, 332, 297, 338)
