#!/usr/bin/env python3
"""The other side of weft's OCI interop tests: the `oras` Python SDK (PyPI
`oras`), which pushes and pulls artifacts with the media types it is told.

    oci-peer.py push REF FILE LAYER_MEDIA_TYPE CONFIG_FILE CONFIG_MEDIA_TYPE
    oci-peer.py manifest REF          prints the manifest (JSON)
    oci-peer.py pull REF DIR          writes the layers into DIR

REF is host:port/repository:tag on a plain-HTTP registry; ORAS_USER and
ORAS_PASSWORD, when set, are the basic credentials.
"""
import json
import os
import sys

import oras.client


def client(ref):
    c = oras.client.OrasClient(hostname=ref.split("/")[0], insecure=True, auth_backend="basic")
    if os.environ.get("ORAS_USER"):
        c.login(username=os.environ["ORAS_USER"], password=os.environ["ORAS_PASSWORD"],
                hostname=ref.split("/")[0], insecure=True)
    return c


def main(argv):
    command, ref = argv[1], argv[2]
    c = client(ref)
    if command == "push":
        path, layer_type, config, config_type = argv[3:7]
        # oras names layers by their path relative to the working directory.
        os.chdir(os.path.dirname(os.path.abspath(path)))
        c.push(target=ref, files=[f"{os.path.basename(path)}:{layer_type}"],
               manifest_config=f"{os.path.abspath(config)}:{config_type}", disable_path_validation=True)
    elif command == "manifest":
        print(json.dumps(c.get_manifest(ref)))
    elif command == "pull":
        for path in c.pull(target=ref, outdir=argv[3]):
            print(path)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv)
