"""``aragog router build-labels | train | eval``; the lead wires ``register`` into aragog/cli.py."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import yaml

from aragog.config import ConfigError, load_config
from aragog.router.artifact import ArtifactError, check_artifact, load_artifact
from aragog.router.builders import BUILDERS, default_data_dir
from aragog.router.embedders import make_embedder
from aragog.router.evaluate import EvalReport, evaluate, markdown
from aragog.router.labels import LabelSet, read_labels, write_labels
from aragog.router.mlp import TrainParams
from aragog.router.png import bar_chart
from aragog.router.train import TrainOptions, prepare, train_router
from aragog.workflow.spec import WorkflowSpec, check_workflow


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    router = subparsers.add_parser("router", help="train and evaluate the one-time router")
    sub = router.add_subparsers(dest="router_command", required=True)

    b = sub.add_parser("build-labels", help="derive real labels from ../shared/data")
    b.add_argument("--workflow", required=True, choices=sorted(BUILDERS))
    b.add_argument("--data", type=Path, default=None, help="default <repo>/../shared/data")
    b.add_argument("--out", type=Path, required=True, help="labels file (.jsonl.gz)")
    b.set_defaults(func=_build_labels)

    t = sub.add_parser("train", help="train a router artifact for one workflow")
    _common(t)
    t.add_argument("--out", type=Path, required=True, help="artifact file (.npz)")
    t.add_argument("--max-loss", type=float, default=0.01, help="accuracy target vs c_max")
    t.add_argument("--margin", type=float, default=0.005, help="calibration safety margin")
    t.add_argument("--hidden", type=int, default=64)
    t.set_defaults(func=_train)

    e = sub.add_parser("eval", help="evaluate an artifact on the held-out split")
    _common(e)
    e.add_argument("--artifact", type=Path, required=True)
    e.add_argument("--out-dir", type=Path, default=None, help="write eval.md and eval.png")
    e.set_defaults(func=_eval)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, required=True, help="gateway config (model costs)")
    p.add_argument("--workflow", type=Path, required=True, help="workflow spec YAML")
    p.add_argument("--labels", type=Path, default=None, help="labels file; default: build")
    p.add_argument("--data", type=Path, default=None, help="data dir when building labels")
    p.add_argument("--embedder", default="hashing", help="hashing[:DIM] | wordllama[:DIM]")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _build_labels(args: argparse.Namespace) -> int:
    labels = BUILDERS[args.workflow].build(args.data or default_data_dir())
    write_labels(args.out, labels)
    print(f"{args.out}: {len(labels.rows)} inputs, models {', '.join(labels.models)}")
    return 0


def _inputs(args: argparse.Namespace) -> tuple[WorkflowSpec, dict[str, float], LabelSet]:
    cfg = load_config(args.config)
    cost = {m.name: m.cost for m in cfg.fleet.models}
    try:
        spec = WorkflowSpec.model_validate(yaml.safe_load(args.workflow.read_text()))
    except (OSError, yaml.YAMLError, ValueError) as err:
        raise ConfigError(str(args.workflow), [f"<file>: {err}"]) from None
    problems = check_workflow(spec, cost, f"workflows[{spec.name}]")
    if problems:
        raise ConfigError(str(args.workflow), problems)
    if args.labels is not None:
        labels = read_labels(args.labels)
    elif spec.name in BUILDERS:
        labels = BUILDERS[spec.name].build(args.data or default_data_dir())
    else:
        raise ConfigError(str(args.workflow), [f"no --labels and no builder for {spec.name!r}"])
    return spec, cost, labels


def _train(args: argparse.Namespace) -> int:
    spec, cost, labels = _inputs(args)
    embedder = make_embedder(args.embedder)
    opts = TrainOptions(
        seed=args.seed,
        max_loss=args.max_loss,
        margin=args.margin,
        params=TrainParams(hidden=args.hidden),
        progress=not args.quiet,
    )
    art, _ = asyncio.run(train_router(labels, spec, cost, embedder, opts))
    art.save(args.out)
    print(f"{args.out}: threshold {art.threshold:.3f}, {json.dumps(art.info)}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    spec, cost, labels = _inputs(args)
    embedder = make_embedder(args.embedder)
    art = load_artifact(args.artifact)
    problems = check_artifact(art, spec, embedder.id, embedder.dim, str(args.artifact))
    if problems:
        raise ArtifactError("\n  ".join(problems))
    prep = asyncio.run(prepare(labels, spec, cost, embedder, args.seed, not args.quiet))
    report = evaluate(art, prep, args.seed, not args.quiet)
    table = markdown([report])
    print(table)
    if args.out_dir is not None:
        write_report([report], args.out_dir, "eval")
    return 0


def write_report(reports: list[EvalReport], out_dir: Path, stem: str) -> None:
    """``stem.md`` (the table) and ``stem.png``: per workflow, bars of FLOPs saved (top row)
    and mean |C(r)|/K (bottom row), one bar per policy in table order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.md").write_text(markdown(reports))
    panels = [
        [[p.flops_saved for p in r.policies] for r in reports],
        [[p.set_share for p in r.policies] for r in reports],
    ]
    bar_chart(panels, out_dir / f"{stem}.png")


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m aragog.router.cli``) until the gateway CLI wires it."""
    parser = argparse.ArgumentParser(prog="aragog")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, ArtifactError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
