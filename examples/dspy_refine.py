"""Self-refine as a DSPy module: three ``dspy.Predict`` stages, each call tagged through
the LM's per-call headers.

    python examples/dspy_refine.py --base-url http://127.0.0.1:8000/v1
"""

from __future__ import annotations

import argparse
import os
import uuid
from typing import Any

# litellm (under DSPy) fetches a model price list at import unless told to use its copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy


class LenientAdapter(dspy.ChatAdapter):
    """Accept plain text as the single output field. The local fleet's models have random
    weights and never write DSPy's field markers; a real model does, and parses as usual."""

    def parse(self, signature: Any, completion: str) -> dict[str, Any]:
        try:
            return dict(super().parse(signature, completion))
        except Exception:
            (field,) = signature.output_fields
            return {field: completion.strip()}


class Refine(dspy.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.generate = dspy.Predict("question -> answer")
        self.critique = dspy.Predict("question, answer -> critique")
        self.refine = dspy.Predict("question, answer, critique -> improved_answer")

    def forward(self, question: str) -> dspy.Prediction:
        rid = uuid.uuid4().hex

        def tagged(stage: str) -> dict[str, Any]:
            tags = {"X-Aragog-Workflow": "refine", "X-Aragog-Request-Id": rid,
                    "X-Aragog-Stage": stage}
            return {"extra_headers": tags}

        draft = self.generate(question=question, config=tagged("generate")).answer
        notes = self.critique(question=question, answer=draft, config=tagged("critique"))
        return self.refine(
            question=question, answer=draft, critique=notes.critique, config=tagged("refine")
        )


def run(base_url: str, question: str = "Why do queues form at busy servers?") -> str:
    # cache=False: identical prompts must still reach the gateway; the model name is a
    # placeholder the gateway replaces.
    lm = dspy.LM("openai/aragog", api_base=base_url, api_key="unused", max_tokens=24,
                 cache=False, num_retries=0)
    with dspy.context(lm=lm, adapter=LenientAdapter()):
        return str(Refine()(question=question).improved_answer)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    print(run(ap.parse_args().base_url))
