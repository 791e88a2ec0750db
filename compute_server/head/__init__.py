"""Head models: the FLAME-structured ``HeadModel`` (torch LBS), real FLAME files, the built-in head.

Public API::

    from compute_server.head import HeadModel, HeadParams, HeadMesh, load_head_model, available_head_models

``load_head_model(None)`` gives the built-in open head (generated offline by ``tools/head_builder``,
stored in ``head/assets/builtin_head.npz``); ``load_head_model("/path/generic_model.pkl")``
a real FLAME model read without chumpy. See docs/head_model.md.
"""

from .model import HeadMesh, HeadModel, HeadParams, available_head_models, load_head_model

__all__ = ["HeadMesh", "HeadModel", "HeadParams", "available_head_models", "load_head_model"]
