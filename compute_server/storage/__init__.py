"""The data directory: avatars and job records, written atomically."""

from .avatar_store import AvatarStore, AvatarWriter, check_avatar_id
from .data_dir import DataDir, DataDirLock, default_data_dir

__all__ = ["AvatarStore", "AvatarWriter", "check_avatar_id", "DataDir", "DataDirLock", "default_data_dir"]
