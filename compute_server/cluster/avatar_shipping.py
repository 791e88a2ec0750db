"""An avatar as one picklable value, so it travels through Ray's object store.

Why: a worker on another machine has no view of the front's data directory, and a studio
should not need a shared filesystem. The front reads a published avatar folder into an
``AvatarPayload`` once and puts it in the object store; a worker that lacks the avatar
fetches it and publishes it into its own cache store; a worker that made an avatar sends
it back the same way, and the front publishes it into the one data directory that counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from compute_server.storage.avatar_store import METADATA_FILE


@dataclass(frozen=True)
class AvatarPayload:
    """avatar: its id.  metadata: avatar.json as a map.  files: file name -> bytes (every
    file of the folder but avatar.json)."""

    avatar: str
    metadata: dict
    files: dict[str, bytes]

    @property
    def size_bytes(self) -> int:
        return sum(len(data) for data in self.files.values())


def read_payload(store, avatar_id: str) -> AvatarPayload:
    """The published avatar ``avatar_id`` of ``store`` (not_found if there is none)."""
    folder = store.path(avatar_id)
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != METADATA_FILE}
    return AvatarPayload(avatar_id, store.metadata(avatar_id), files)


def publish_payload(store, payload: AvatarPayload) -> str:
    """Publish ``payload`` under its own id into ``store`` (an AvatarStore, or a job's view
    of one, which records the job); nothing to do when it is there."""
    if store.exists(payload.avatar):
        return payload.avatar
    return store.publish(payload.avatar, payload.files, payload.metadata)
