"""The examples (and the annotators' notes) each ``rsexp <command> --help`` ends with;
``tests/test_cli_help.py`` parses every example line."""

EXAMPLES = {
    "train": """examples:
  rsexp train --config sweeps/synthetic.yaml
  rsexp train --config sweeps/synthetic.yaml train.epochs=2 data.synthetic.num_train=32
  rsexp train --config sweeps/ucf50.yaml --until-epoch 5 loss.lambda_s=0.5""",
    "resume": """examples:
  rsexp resume runs/synthetic/20261202-091039-tsvit-rs-s0-6b56
  rsexp resume 20261202-091039-tsvit-rs-s0-6b56 --epochs 60""",
    "sweep": """examples:
  rsexp sweep --config sweeps/synthetic.yaml --workers 2
  rsexp sweep --config sweeps/ucf50.yaml --trials 40 --storage postgresql://u:p@db/rs
  rsexp sweep --config sweeps/ucf50.yaml --storage postgresql://u:p@db/rs --trials-only
  rsexp sweep --config sweeps/ucf50.yaml --storage postgresql://u:p@db/rs --workers 8 \
      --launcher slurm sweep.slurm.partition=gpu""",
    "paper": """examples:
  rsexp paper --config sweeps/ucf50.yaml --models tsvit,vivit --seeds 3 --workers 2
  rsexp paper --config sweeps/ucf50.yaml --models 'timesformer*' --checkpoint k400.pyth""",
    "prepare": """examples:
  rsexp prepare --config sweeps/ucf50.yaml
  rsexp prepare --config sweeps/folder.yaml data.path=/data/my_videos""",
    "guidance": """annotators (guidance.annotator=...):
  openai  an OpenAI-compatible vision model names the key cells of each covered video's
          sampled frames on a 4 x 4 grid (guidance.openai.*: model, base_url, batch for the
          Batch API, max_usd a cost cap); the key comes from OPENAI_API_KEY only
  oracle  the synthetic dataset's exact object cells (no API; guidance.noise.drop/add
          degrade them for the guidance-quality study)
  motion  the top guidance.motion_top_k cells by frame-difference energy (no API)
  a plugin may register more (rsexp models lists them). Only the guidance.coverage
  share of training videos is annotated; a rerun continues where it stopped.

examples:
  rsexp guidance --config sweeps/ucf50.yaml --dry-run
  rsexp guidance --config sweeps/ucf50.yaml guidance.openai.batch=true
  rsexp guidance --config sweeps/synthetic.yaml guidance.annotator=oracle""",
    "tables": """examples:
  rsexp tables --source runs
  rsexp tables --source sqlite:///runs/mlflow.db --dataset ucf50 --format tex""",
    "figures": """examples:
  rsexp figures --source runs --dataset synthetic
  rsexp figures --study synthetic-tsvit --storage sqlite:///runs/synthetic/optuna.db""",
    "models": """examples:
  rsexp models""",
    "config": """examples:
  rsexp config --config sweeps/synthetic.yaml loss.tau=0.5""",
}
