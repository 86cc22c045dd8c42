"""``rag-vqa train``: train or fine-tune ReT from a TOML file and/or flags.

Several GPUs: ``accelerate launch --multi_gpu --num_processes N -m rag_vqa train ...`` or
``torchrun --nproc_per_node N -m rag_vqa train ...`` (the trainer uses accelerate)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .cli_args import non_negative_int, positive_int
from .loading import DEFAULT_RETRIEVER

__all__ = ["register"]

_EPILOG = """\
examples:
  rag-vqa train --queries train.jsonl --passages kb/ --images imgs/ --val-queries val.jsonl \\
      --output-dir runs/ret --max-steps 2000 --eval-every 500
  rag-vqa train --config train.toml --resume          # continue an interrupted run
  accelerate launch --multi_gpu --num_processes 4 -m rag_vqa train --config train.toml

A config file holds the flags' values as top-level keys (queries, passages, images, retriever,
val_queries, hard_negatives, ...) and a [train] table (max_steps, batch_size, learning_rate,
warmup_steps, grad_accumulation, mixed_precision, cache_features, unfreeze_last_blocks,
train_only, temperature, learn_temperature, symmetric, hard_negatives_per_query, eval_every,
save_every, report_to, seed, ...). Flags override the file.
"""

# flag -> TrainConfig field
_TRAIN_FLAGS = {
    "output_dir": "output_dir", "max_steps": "max_steps", "eval_every": "eval_every",
    "save_every": "save_every", "batch_size": "batch_size", "lr": "learning_rate",
    "warmup_steps": "warmup_steps", "grad_accumulation": "grad_accumulation",
    "mixed_precision": "mixed_precision", "hard_negatives_per_query": "hard_negatives_per_query",
    "unfreeze_last_blocks": "unfreeze_last_blocks", "seed": "seed", "num_workers": "num_workers",
    "temperature": "temperature", "log_every": "log_every", "train_only": "train_only",
}


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train", help="train or fine-tune the ReT retriever (resumable, one or many GPUs)",
        description="Train ReT with a symmetric in-batch contrastive loss over late-interaction "
                    "scores. Checkpoints (released layout + optimiser state) go to "
                    "OUTPUT_DIR/checkpoint-N; the final model to OUTPUT_DIR/model.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--config", help="TOML file (top-level data keys and a [train] table)")
    data = train.add_argument_group("data")
    data.add_argument("--queries", help="ReT JSONL training queries (data_id, instruction, "
                                        "question, image_path, passage_id)")
    data.add_argument("--passages", help="knowledge-base folder or ReT JSONL passage file")
    data.add_argument("--images", help="image root of the queries (and of JSONL passages)")
    data.add_argument("--passage-images", help="image root of the passages, if different")
    data.add_argument("--val-queries", help="held-out queries for Recall@K during training")
    data.add_argument("--val-all-passages", action="store_true", default=None,
                      help="rank validation queries against every passage (default: against "
                           "the validation positives only)")
    data.add_argument("--hard-negatives",
                      help="JSONL of data_id + hard_negatives ids, or the predictions.jsonl of "
                           "`rag-vqa eval run --retrieval-only` (mined with our index)")
    data.add_argument("--hard-negatives-top", type=positive_int,
                      help="use the first N ids of each mined list (default 20)")
    model = train.add_argument_group("model and schedule")
    model.add_argument("--retriever", help=f"checkpoint to start from: hub id or folder "
                                           f"(default {DEFAULT_RETRIEVER}), or 'tiny'")
    model.add_argument("--output-dir", help="where checkpoints, metrics and the model go")
    model.add_argument("--max-steps", type=positive_int, help="optimiser steps")
    model.add_argument("--eval-every", type=non_negative_int,
                       help="validate every N steps (0: at the end)")
    model.add_argument("--save-every", type=non_negative_int,
                       help="checkpoint every N steps (0: at the end)")
    model.add_argument("--batch-size", type=positive_int,
                       help="queries per process and micro-batch")
    model.add_argument("--grad-accumulation", type=positive_int, help="micro-batches per step")
    model.add_argument("--lr", type=float, help="peak learning rate")
    model.add_argument("--warmup-steps", type=non_negative_int,
                       help="linear warm-up steps (default 100; kept below --max-steps)")
    model.add_argument("--log-every", type=positive_int,
                       help="write loss, learning rate and temperature every N steps (default "
                            "10)")
    model.add_argument("--temperature", type=float, help="logit temperature (initial value)")
    model.add_argument("--learn-temperature", action="store_true", default=None)
    model.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"])
    model.add_argument("--cache-features", action="store_true", default=None,
                       help="compute frozen backbone states once and reuse them (fast epochs)")
    model.add_argument("--unfreeze-last-blocks", type=non_negative_int,
                       help="also train the last N blocks of each backbone")
    model.add_argument("--train-only", nargs="+", metavar="PATTERN",
                       help="train only the parameters whose names match one of these fnmatch "
                            "patterns (e.g. '*text*': the text path; the rest stays frozen)")
    model.add_argument("--hard-negatives-per-query", type=non_negative_int,
                       help="hard negatives appended to each query's candidates")
    model.add_argument("--report-to", nargs="+", choices=["jsonl", "tensorboard", "wandb"])
    model.add_argument("--seed", type=int)
    model.add_argument("--num-workers", type=non_negative_int,
                       help="DataLoader workers decoding images")
    train.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                       help="continue the run in --output-dir (or from CHECKPOINT)")
    train.add_argument("--json", action="store_true", help="print the result as JSON")
    train.set_defaults(handler=_cmd_train)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {
        key: getattr(args, key) for key in
        ("queries", "passages", "images", "passage_images", "val_queries", "val_all_passages",
         "hard_negatives", "hard_negatives_top", "retriever", "resume")}
    train = {field: getattr(args, flag) for flag, field in _TRAIN_FLAGS.items()}
    train["learn_temperature"] = args.learn_temperature
    train["cache_features"] = args.cache_features
    train["report_to"] = args.report_to
    values["train"] = train
    return values


def _cmd_train(args: argparse.Namespace) -> int:
    from .training import load_job, run_training

    job = load_job(args.config, _overrides(args))
    result, final = run_training(job)
    if args.json:
        print(json.dumps({"steps": result.steps, "final_loss": result.final_loss,
                          "validation": result.validation, "checkpoint": result.checkpoint,
                          "model": str(final) if final else None, "seconds": result.seconds},
                         indent=2))
        return 0
    print(f"trained {result.steps} steps in {result.seconds:.1f} s; last loss "
          f"{result.final_loss:.4f}")
    for key, value in result.validation.items():
        print(f"  validation {key}: {value:.4f}")
    print(f"checkpoint: {result.checkpoint}")
    if final:
        print(f"model: {final}  (use it with --retriever {final})")
    else:
        print("paused before max_steps: continue with --resume", file=sys.stderr)
    return 0
