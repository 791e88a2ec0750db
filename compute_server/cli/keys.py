"""``headsplat keys``: make CURVE key pairs for a server reachable from other machines."""

from __future__ import annotations

import shutil
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "keys", help="make CURVE key pairs (server and client)",
        description="Without --name: a server pair, a client pair and an authorized_clients folder holding the "
                    "client's public key. With --name: one more client pair to authorize.")
    p.add_argument("--out", metavar="DIR", type=Path, required=True, help="folder to write the keys into")
    p.add_argument("--name", help="make only one pair with this name (e.g. a second client)")
    p.set_defaults(func=run)


def run(args) -> int:
    from compute_server.server.security import create_key_pair

    out = args.out.expanduser().resolve()
    if args.name:
        public, secret = create_key_pair(out, args.name)
        print(f"wrote {public} (public) and {secret} (secret, keep it private)")
        print(f"authorize it: copy {public.name} into the server's --curve-clients folder and restart the server")
        print(f"use it:       headsplat info --server tcp://HOST:7788 --server-key server.key --client-key {secret}")
        return 0
    server_public, server_secret = create_key_pair(out, "server")
    client_public, client_secret = create_key_pair(out, "client")
    authorized = out / "authorized_clients"
    authorized.mkdir(exist_ok=True)
    shutil.copyfile(client_public, authorized / client_public.name)
    print(f"wrote key pairs in {out}")
    print("on the server machine (keep server.key_secret there only):")
    print(f"  headsplat serve --bind tcp://0.0.0.0:7788 --curve-secret {server_secret} --curve-clients {authorized}")
    print("on each client (copy server.key and client.key_secret there):")
    print(f"  headsplat info --server tcp://SERVER-HOST:7788 --server-key {server_public} --client-key {client_secret}")
    print("  Blender add-on preferences: the same two files")
    print(f"more clients: headsplat keys --out {out} --name NAME, then copy NAME.key into {authorized}")
    return 0
