"""The ceiling reference: the same TorchScript file behind one bare FastAPI route.

    MODEL_PATH=model.pt python benchmarks/peers/fastapi_server.py --port 8080 --workers 2

No validation, metrics, logging or traffic split: parse the V1 body with orjson, look the
features up in dicts, score, answer. Binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

sys.path.insert(0, str(Path(__file__).parent))
from scorer import DictScorer

app = FastAPI()
scorer = DictScorer(os.environ["MODEL_PATH"]) if "MODEL_PATH" in os.environ else None


@app.post("/v1/models/{name}:predict")
async def predict(name: str, request: Request) -> Response:
    assert scorer is not None
    instances = orjson.loads(await request.body())["instances"]
    return Response(orjson.dumps({"predictions": scorer.predict(instances)}), media_type="application/json")


@app.get("/ready")
async def ready() -> Response:
    return Response(b'{"ready": true}', media_type="application/json")


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    uvicorn.run(
        "fastapi_server:app",
        app_dir=str(Path(__file__).parent),
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_level="warning",
    )
