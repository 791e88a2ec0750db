"""What the command line and the demo both do as clients of a server: a terminal progress bar
for job events and writing an avatar's folder (PLY, metadata, previews) from the server.

Why a package of its own: ``cli/`` and ``demo/`` are both front ends; neither may reach into
the other. These helpers use only the shared client (``shared.client``), never the server's
internals.
"""
