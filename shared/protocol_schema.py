"""The params of every method as data: names, types and which are required.

Why: docs/protocol.md describes each method's params in prose and tables; this module
says the same thing in a form programs can walk. Tests generate wrong values for every
field from it (tests/test_server_type_fuzz.py) and check that the document names every
field listed here (tests/test_protocol_schema.py), so the three cannot drift apart.

A field's ``type`` is one of:
    "str", "int", "float", "bool", "bytes"      plain msgpack values (an int is a valid float)
    "job_id", "avatar_id"                       strings matching the id patterns
    "list", "map"                               with ``items`` / ``fields`` describing the contents
    "array"                                     a head-parameter array: $nd or a list of rows of numbers
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Field:
    """One param. items: the element of a list; fields: the entries of a map."""

    type: str
    required: bool = False
    items: "Field | None" = None
    fields: dict = field(default_factory=dict)


def _map(required: bool = False, **fields: Field) -> Field:
    return Field("map", required, fields=fields)


NAMED_FILE = _map(name=Field("str"), data=Field("bytes", True))
CAMERA = _map(world_to_camera=Field("list", True, items=Field("float")), fx=Field("float", True),
              fy=Field("float", True), cx=Field("float", True), cy=Field("float", True),
              width=Field("int", True), height=Field("int", True), near=Field("float"), far=Field("float"))
HEAD_PARAMS = _map(expr=Field("array"), rotation=Field("array"), neck_pose=Field("array"),
                   jaw_pose=Field("array"), eyes_pose=Field("array"), translation=Field("array"))

METHOD_PARAMS: dict[str, dict[str, Field]] = {
    "server.info": {},
    "job.status": {"job": Field("job_id", True), "watch": Field("bool")},
    "job.list": {"states": Field("list", items=Field("str")), "limit": Field("int")},
    "job.cancel": {"job": Field("job_id", True)},
    "job.result": {"job": Field("job_id", True), "frames": Field("list", items=Field("int"))},
    "avatar.list": {},
    "avatar.get": {"avatar": Field("avatar_id", True), "include": Field("list", items=Field("str"))},
    "avatar.delete": {"avatar": Field("avatar_id", True)},
    "avatar.create": {
        "images": Field("list", items=NAMED_FILE), "video": NAMED_FILE, "name": Field("str"),
        "preset": Field("str"), "seed": Field("int"), "diffusion": Field("str"), "head_model": Field("str"),
        "options": _map(iterations=Field("int"), image_size=Field("int"), train_frames=Field("int"),
                        holdout=Field("float")),
    },
    "motion.track": {"video": _map(True, name=Field("str"), data=Field("bytes", True)), "head_model": Field("str"),
                     "avatar": Field("avatar_id"), "max_frames": Field("int")},
    "render.frames": {
        "avatar": Field("avatar_id", True), "params": HEAD_PARAMS, "cameras": Field("list", items=CAMERA),
        "camera_preset": Field("str"), "size": Field("list", items=Field("int")), "format": Field("str"),
        "depth": Field("bool"), "background": Field("list", items=Field("float")), "first_frame": Field("int"),
    },
}
