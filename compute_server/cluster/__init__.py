"""Running the server's jobs on a Ray cluster (``headsplat serve --cluster ADDRESS``).

The ZeroMQ front (server/, jobs/) stays what it is: it validates requests, keeps the job
records and the avatar store, and talks to the seats. What changes is who runs a job:
instead of the front's own worker thread, a pool of long-lived Ray actors (one per GPU,
or per CPU on a CPU cluster) runs the same pipeline functions with a JobContext of their
own, and the front relays what they report.

- connection.py: joining the cluster, and watching that it is still there.
- worker.py: the actor (warm head models, a per-worker avatar cache, progress buffering).
- pool.py: the front's view of the actors: which are free, who they are.
- dispatch.py: one job on one actor (progress relay, cancel, re-run on a dead worker).
- render_split.py: render.frames split into chunks over free actors, frames in order.
- manager.py: the job manager that runs several jobs at once (one per actor).
- setup.py: wiring it all into a Server.
"""
