"""``t2m train``: a thin wrapper over :func:`t2m.training.trainer.train` (multitask training of one T5, resumable).

    t2m train --config CONFIG [--out DIR] [--data DIR] [--max-steps N] [--max-minutes M] [--stop-at-step N] [--no-resume]
"""

from __future__ import annotations

import argparse

from t2m.training.trainer import TrainConfig, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training config (JSON or TOML; keys of t2m.training.trainer.TrainConfig)")
    parser.add_argument("--out", dest="out_dir", help="output directory (overrides the config's out_dir)")
    parser.add_argument("--data", dest="data_dir", help="ChEBI-20 folder (overrides the config's data_dir)")
    parser.add_argument("--max-steps", type=int, help="overrides the config's max_steps")
    parser.add_argument("--max-minutes", type=float, help="overrides the config's max_minutes")
    parser.add_argument("--stop-at-step", type=int,
                        help="stop (and save) at this step; the learning-rate schedule still follows max_steps "
                             "(overrides the config's stop_at_step)")
    parser.add_argument("--no-resume", action="store_true", help="start afresh even if checkpoints exist")


def run(args: argparse.Namespace) -> int:
    config = TrainConfig.load(args.config, out_dir=args.out_dir, data_dir=args.data_dir, max_steps=args.max_steps,
                              max_minutes=args.max_minutes, stop_at_step=args.stop_at_step)
    final = train(config, resume=not args.no_resume)
    print(f"model saved to {final}")
    return 0
