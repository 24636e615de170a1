"""Build the tiny random-weight models the local vLLM CPU fleet serves.

No model hub is reachable, so everything is made here: a byte-level BPE tokenizer trained on
local text and random-initialised Llama models of a few sizes. The weights are random, so the
text they produce is noise; they exist to exercise routing, scheduling, streaming and metrics.

Run with the vLLM virtualenv's python (it has torch, transformers and tokenizers):

    .venv-vllm/bin/python scripts/build_tiny_models.py [--out models]

Output is deterministic: the same inputs and library versions give byte-identical files.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SEED = 1234
VOCAB_SIZE = 1024
MAX_POSITIONS = 2048

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL_TOKENS = [BOS, EOS, PAD, UNK, *ROLE_TOKENS]

# BOS, then each turn as "<|role|>\n{content}</s>\n"; a reply prompt ends "<|assistant|>\n".
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# name -> (kind, hidden size, layers, attention heads); head size 32 suits the CPU backend.
# "embed" models are saved as causal LMs too and served with `--runner pooling --convert embed`
# (vLLM 0.32 cannot load a bare LlamaModel checkpoint: it expects the "model." weight prefix).
MODELS: dict[str, tuple[str, int, int, int]] = {
    "tiny-s": ("generate", 64, 2, 2),
    "tiny-m": ("generate", 128, 4, 4),
    "tiny-l": ("generate", 256, 6, 8),
    "tiny-embed": ("embed", 64, 2, 2),
}


def corpus_lines() -> Iterator[str]:
    """MMLU-Pro question text when the shared data is present, else Python's own sources."""
    questions = REPO.parent / "shared" / "data" / "mmlu_pro" / "questions.jsonl.gz"
    if questions.is_file():
        print(f"tokenizer corpus: {questions}")
        with gzip.open(questions, "rt", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                yield row["question"]
                yield from row.get("options", [])
        return
    stdlib = Path(json.__file__).resolve().parent.parent
    print(f"tokenizer corpus: python stdlib sources under {stdlib}")
    for path in sorted(stdlib.glob("*.py")):
        yield path.read_text(encoding="utf-8", errors="replace")


def train_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=ROLE_TOKENS,
        chat_template=CHAT_TEMPLATE,
        model_max_length=MAX_POSITIONS,
        clean_up_tokenization_spaces=False,
    )


def build_model(name: str, tokenizer: Any, out: Path) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    kind, hidden, layers, heads = MODELS[name]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).eval()
    target = out / name
    if target.exists():
        shutil.rmtree(target)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    ).save_pretrained(target)
    params = sum(p.numel() for p in model.parameters())
    info = {
        "name": name,
        "kind": kind,
        "parameters": params,
        "hidden_size": hidden,
        "layers": layers,
    }
    (target / "aragog_model.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"built {target} ({kind}, {params / 1e6:.2f} M parameters)")


def tree_digest(root: Path) -> str:
    """One hash over the built models, to check that a rebuild is byte-identical."""
    h = hashlib.sha256()
    for name in MODELS:
        for path in sorted(p for p in (root / name).rglob("*") if p.is_file()):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "models")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.use_deterministic_algorithms(True)
    tokenizer = train_tokenizer()
    print(f"tokenizer: {len(tokenizer)} tokens")
    for name in MODELS:
        build_model(name, tokenizer, out)
    print(f"digest {tree_digest(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
