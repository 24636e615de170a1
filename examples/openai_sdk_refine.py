"""Self-refine (generate -> critique -> refine) with the official ``openai`` SDK, every call
tagged with its workflow, request and stage so Aragog picks each stage's model.

    python examples/openai_sdk_refine.py --base-url http://127.0.0.1:8000/v1
"""

from __future__ import annotations

import argparse
import uuid

from openai import OpenAI


def run(base_url: str, question: str = "Why do queues form at busy servers?") -> dict[str, str]:
    """One workflow request; returns stage -> the fleet model Aragog placed it on."""
    client = OpenAI(base_url=base_url, api_key="unused")  # the gateway holds engine keys
    tags = {"X-Aragog-Workflow": "refine", "X-Aragog-Request-Id": uuid.uuid4().hex}
    placed: dict[str, str] = {}

    def ask(stage: str, prompt: str) -> str:
        raw = client.chat.completions.with_raw_response.create(
            model="aragog",  # replaced by the model the scheduler chooses for this stage
            messages=[{"role": "user", "content": prompt}],
            max_tokens=24,
            extra_headers={**tags, "X-Aragog-Stage": stage},
        )
        placed[stage] = raw.headers["x-aragog-model"]
        return raw.parse().choices[0].message.content or ""

    draft = ask("generate", question)
    notes = ask("critique", f"Critique this answer to {question!r}:\n{draft}")
    ask("refine", f"Improve the answer using the critique.\nAnswer: {draft}\nCritique: {notes}")
    return placed


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    print(run(ap.parse_args().base_url))
