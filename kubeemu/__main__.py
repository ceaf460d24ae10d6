"""Standalone mode: ``python -m kubeemu --port 8443 --kubeconfig PATH [--crds DIR]``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from kubeemu.emulator import Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubeemu", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443, help="0 picks a free port")
    parser.add_argument("--kubeconfig", required=True, help="where to write the kubeconfig")
    parser.add_argument(
        "--crds",
        action="append",
        default=[],
        help="CRD YAML file or directory to install at start (repeatable)",
    )
    parser.add_argument(
        "--no-istio",
        action="store_true",
        help="do not install Istio's CRDs (nor the Gateway API's)",
    )
    parser.add_argument(
        "--no-gateway-api",
        action="store_true",
        help="do not install the Gateway API's CRDs",
    )
    args = parser.parse_args(argv)
    emu = Emulator(
        crd_paths=args.crds,
        install_istio=not args.no_istio,
        install_gateway_api=not (args.no_istio or args.no_gateway_api),
        host=args.host,
        port=args.port,
    )
    emu.start()
    path = emu.write_kubeconfig(args.kubeconfig)
    print(f"kubeemu serving {emu.url}; kubeconfig: {path}", flush=True)
    print(f"  export KUBECONFIG={path}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
