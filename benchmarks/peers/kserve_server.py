"""The peer: the same TorchScript file behind KServe's own Python `ModelServer` (V1 protocol).

    python benchmarks/peers/kserve_server.py --model_path model.pt --model_name NAME \
        --http_port 8080 --grpc_port 8081 --workers 2

Every KServe flag (`--http_port`, `--workers`, `--enable_latency_logging`, ...) is read by
KServe's own argument parser, which this script extends. KServe 0.21 binds REST to 0.0.0.0
(no option for another address). Everything else is at KServe's defaults, as a user gets it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import kserve
from kserve import model_server

sys.path.insert(0, str(Path(__file__).parent))
from scorer import DictScorer


class TorchScriptModel(kserve.Model):
    """V1 `{"instances": [{feature: value}, ...]}` in, `{"predictions": [...]}` out."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.scorer: DictScorer | None = None
        self.load()

    def load(self) -> bool:
        self.scorer = DictScorer(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload: dict, headers: dict[str, str] | None = None) -> dict[str, Any]:
        assert self.scorer is not None
        return {"predictions": self.scorer.predict(payload["instances"])}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_path", required=True, help="the TorchScript artifact (model.pt)")
    args, _ = parser.parse_known_args()
    model = TorchScriptModel(args.model_name, args.model_path)
    kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers).start(
        [model]
    )
