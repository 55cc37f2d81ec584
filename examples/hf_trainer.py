"""RS in a transformers ``Trainer``: ``compute_loss`` overridden, a Hugging Face
TimeSformer on rsexp's synthetic clips.

    python examples/hf_trainer.py [--epochs 4] [--hf-path DIR]

The dataset's items carry a ``guidance`` mask beside ``pixel_values`` and ``labels``
(``remove_unused_columns=False`` keeps it); ``compute_loss`` reads the tapped attention
of the step's forward and returns RS's total; the RS terms are averaged into each of the
Trainer's log lines (``loss/ce``, ``loss/spatial``, ``loss/temporal``). Needs
``accelerate`` (rsexp's ``dev`` extra installs it).
"""

from __future__ import annotations

import tempfile

import transformers
from synthetic_clips import GRID, GuidedClips, parse_args, tiny_timesformer

import rsexp


class RSTrainer(transformers.Trainer):
    def __init__(self, *args, rs: rsexp.ReasoningSupervision, **kwargs):
        super().__init__(*args, **kwargs)
        self.rs = rs
        self.tap = rsexp.attention_tap(self.model)
        self._terms: dict[str, list[float]] = {}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        video, labels, masks = inputs["pixel_values"], inputs["labels"], inputs["guidance"]
        out = model(pixel_values=video)
        views = self.rs.views(self.accelerator.unwrap_model(model), video)
        terms = self.rs(out.logits, labels, self.tap.attn, masks, views)
        for k in ("loss/ce", "loss/spatial", "loss/temporal"):
            self._terms.setdefault(k, []).append(float(terms[k].detach()))
        return (terms["loss"], out) if return_outputs else terms["loss"]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log line: the RS terms since the last one
            logs.update({k: sum(v) / len(v) for k, v in self._terms.items()})
            self._terms = {}
        super().log(logs, start_time)


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns each epoch's log line (``loss`` and the RS terms)."""
    args = parse_args(__doc__, argv)
    data = GuidedClips(args.clips)
    steps = -(-len(data) // 16)  # log once per epoch
    with tempfile.TemporaryDirectory() as out:
        trainer = RSTrainer(
            model=tiny_timesformer(args.hf_path),
            args=transformers.TrainingArguments(
                output_dir=out, num_train_epochs=args.epochs, per_device_train_batch_size=16,
                learning_rate=args.lr, logging_steps=steps, save_strategy="no", report_to=[],
                remove_unused_columns=False, seed=0, disable_tqdm=True, use_cpu=True,
            ),
            train_dataset=data,
            rs=rsexp.ReasoningSupervision(lambda_s=1.0, lambda_t=0.5, guidance_grid=GRID),
        )  # fmt: skip
        trainer.train()
    return [h for h in trainer.state.log_history if "loss/spatial" in h]


if __name__ == "__main__":
    main()
