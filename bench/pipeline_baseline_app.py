"""The baseline for bench/predict_bench.py: a FastAPI handler that calls a transformers
`pipeline` per request (built once at start), as a hand-written model server would.

    BASELINE_MODEL_DIR=/path/to/model uvicorn bench.pipeline_baseline_app:app --port 8100
"""

import os
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline

classifier = pipeline(
    "text-classification", model=os.environ["BASELINE_MODEL_DIR"], top_k=None, device="cpu"
)
app = FastAPI()


class Pair(BaseModel):
    text: str
    text_pair: str | None = None


class Request(BaseModel):
    inputs: list[Pair]


@app.post("/predict")
def predict(request: Request) -> dict[str, Any]:
    outputs = [
        classifier(
            {"text": item.text, "text_pair": item.text_pair} if item.text_pair else item.text
        )
        for item in request.inputs
    ]
    return {"predictions": outputs}
