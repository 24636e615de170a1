"""Voting (four voters in parallel, then an aggregator) with LangChain's ``ChatOpenAI``;
each stage is the same model bound to its own Aragog tags.

    python examples/langchain_voting.py --base-url http://127.0.0.1:8000/v1
"""

from __future__ import annotations

import argparse
import uuid

from langchain_core.runnables import RunnableParallel
from langchain_openai import ChatOpenAI


def run(base_url: str, question: str = "Is a queue of 8 long?") -> str:
    """One workflow request; returns the aggregator's answer."""
    llm = ChatOpenAI(base_url=base_url, api_key="unused", model="aragog", max_tokens=16)
    rid = uuid.uuid4().hex

    def stage(name: str) -> ChatOpenAI:
        tags = {"X-Aragog-Workflow": "voting", "X-Aragog-Request-Id": rid, "X-Aragog-Stage": name}
        # extra_headers reaches the openai client per call; model stays a placeholder.
        return llm.bind(extra_headers=tags)  # type: ignore[return-value]

    # The voters run concurrently, so the scheduler sees them queued together.
    voters = RunnableParallel({f"voter{i}": stage(f"voter{i}") for i in range(1, 5)})
    votes = voters.invoke(f"Vote yes or no: {question}")
    tally = stage("aggregate").invoke(
        "Tally these votes:\n" + "\n".join(str(v.content) for v in votes.values())
    )
    return str(tally.content)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    print(run(ap.parse_args().base_url))
