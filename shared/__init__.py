"""HeadSplat's shared package: the wire protocol and data formats that both the Blender
add-on and the compute server use.

Pure Python plus numpy, msgpack and pyzmq: no bpy, no torch. The add-on vendors this
package inside its zip, so every import inside it is relative.
"""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
# file suffixes a video may have wherever a video is taken (avatar.create, motion.track,
# the add-on's and the CLI's file pickers); FFmpeg reads them all
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi")
