"""Wrong types for every field of every method, generated from the protocol's own schema
(shared/protocol_schema.py): no reply is ``internal``, every ``bad_request`` names the
field, and the server is healthy afterwards (a real server process on loopback).

While the fuzz runs, a long test.count job holds the worker, and any request that is
accepted as a job is cancelled at once, so no real pipeline work runs."""

from __future__ import annotations

import copy
import io

import numpy as np
from PIL import Image

from shared.protocol_schema import METHOD_PARAMS, Field
from tests.server_harness import running_server

# One pool of wrong values; each field gets every value that is not of its own type.
POOL = {
    "int 0": 0, "int -1": -1, "int 2^63-1": 2**63 - 1, "int -2^63": -(2**63), "float 1.5": 1.5,
    "float inf": float("inf"), "float nan": float("nan"), "str empty": "", "str NUL": "x\x00y",
    "str RLO": "\u202eevil", "str long": "x" * 5000, "bytes": b"\x00\x01\x02", "list empty": [],
    "list mixed": [1, "a", None], "list ragged": [[1.0, 2.0, 3.0], [1.0]], "list of str": ["a", "b", "c"],
    "map empty": {}, "map": {"k": 1}, "bool": True,
    "array empty rows": np.zeros((0, 3), np.float32), "array int8 cube": np.ones((2, 2, 2), np.int8),
    "array 1-d": np.arange(5, dtype=np.float64),
}
VALID_KINDS = {  # pool entries that are of the field's type (not "wrong types")
    "str": {"str empty", "str NUL", "str RLO", "str long"}, "int": {"int 0", "int -1", "int 2^63-1", "int -2^63"},
    "float": {"int 0", "int -1", "int 2^63-1", "int -2^63", "float 1.5", "float inf", "float nan"},
    "bool": {"bool"}, "bytes": {"bytes"}, "list": {"list empty", "list mixed", "list ragged", "list of str"},
    "map": {"map empty", "map"}, "job_id": set(), "avatar_id": set(),
    "array": {"array empty rows", "array int8 cube", "array 1-d", "list ragged", "list empty", "list mixed",
              "list of str"},
}
ALLOWED_CODES = {"bad_request", "too_large", "not_found", "bad_image", "bad_file", "unavailable", "conflict"}


def png_bytes(size=32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (180, 120, 90)).save(buf, format="PNG")
    return buf.getvalue()


def camera() -> dict:
    return {"world_to_camera": [1.0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0.6, 0, 0, 0, 1], "fx": 300.0, "fy": 300.0,
            "cx": 32.0, "cy": 32.0, "width": 64, "height": 64, "near": 0.01, "far": 10.0}


def baselines(job: str, avatar: str) -> dict:
    """A valid request for each method (the fuzz changes one field at a time)."""
    return {
        "server.info": {}, "job.status": {"job": job, "watch": False}, "job.list": {"states": ["done"], "limit": 5},
        "job.cancel": {"job": job}, "job.result": {"job": job}, "avatar.list": {},
        "avatar.get": {"avatar": avatar, "include": ["note.txt"]}, "avatar.delete": {"avatar": "av_00000000zz"},
        "avatar.create": {"images": [{"name": "me.png", "data": png_bytes()}], "name": "me", "preset": "draft",
                          "seed": 1, "diffusion": "none", "head_model": "builtin",
                          "options": {"iterations": 10, "image_size": 64, "train_frames": 10, "holdout": 0.0}},
        "motion.track": {"video": {"name": "clip.mp4", "data": b"not really a video"}, "head_model": "builtin",
                         "max_frames": 5},
        "render.frames": {"avatar": avatar, "params": {"jaw_pose": np.zeros((2, 3), np.float32)},
                          "cameras": [camera()], "size": [64, 64], "format": "png", "depth": False,
                          "background": [0.0, 0.0, 0.0, 0.0], "first_frame": 0},
    }


def field_paths(fields: dict[str, Field], base, prefix=()):
    """(path, field) for every field of the schema that the baseline has (lists: item 0)."""
    for name, spec in fields.items():
        path = prefix + (name,)
        yield path, spec
        value = base.get(name) if isinstance(base, dict) else None
        if spec.type == "map" and isinstance(value, dict):
            yield from field_paths(spec.fields, value, path)
        if spec.type == "list" and spec.items is not None and spec.items.type == "map" and value:
            yield from field_paths(spec.items.fields, value[0], path + (0,))


def with_value(params: dict, path: tuple, value, *, delete=False) -> dict:
    out = copy.deepcopy(params)
    node = out
    for key in path[:-1]:
        node = node[key]
    if delete:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return out


def test_wrong_types_for_every_field_of_every_method_never_answer_internal(tmp_path):
    cases, refused, accepted, problems = 0, 0, [], []
    with running_server(tmp_path, extra_args=["--min-free-mb", "1"]) as server, server.client(timeout_s=30) as client:
        job = client.submit("test.avatar", {"name": "fuzz", "points": 10})
        avatar = client.wait_job(job, timeout_s=30)["avatar"]
        blocker = client.submit("test.count", {"steps": 10_000, "step_s": 0.05})
        base = baselines(job, avatar)
        for method, fields in METHOD_PARAMS.items():
            for path, spec in field_paths(fields, base[method]):
                label = ".".join(map(str, path))
                trials = [(name, value) for name, value in POOL.items() if name not in VALID_KINDS[spec.type]]
                if spec.required:
                    trials.append(("missing", None))
                for name, value in trials:
                    params = with_value(base[method], path, value, delete=name == "missing")
                    reply = client.request(method, params)
                    cases += 1
                    if reply.ok:
                        if "job" in reply.result and reply.result.get("state") == "queued":
                            client.cancel(reply.result["job"])
                            accepted.append(f"{method} {label}={name}")
                        continue
                    refused += 1
                    error = reply.error
                    if error.code not in ALLOWED_CODES:
                        problems.append(f"{method} {label}={name}: {error.code}: {error.message}")
                    elif error.code == "bad_request" and str(path[-1] if isinstance(path[-1], str) else path[-2]) \
                            not in error.message:
                        problems.append(f"{method} {label}={name}: message does not name the field: {error.message}")
        client.cancel(blocker)
        assert not problems, f"{len(problems)} of {cases} cases:\n" + "\n".join(problems[:40])
        assert cases > 500 and refused > 0.9 * cases, (cases, refused, accepted)
        info = client.info()
        assert info["health"]["ok"] and info["health"]["worker_alive"], info["health"]
        done = client.wait_job(client.submit("test.count", {"steps": 2, "step_s": 0.0}), timeout_s=30)
        assert done["count"] == 2
        assert "Traceback" not in server.log()
    print(f"type fuzz: {cases} cases, {refused} refused, {len(accepted)} accepted (cancelled): {accepted}")
