"""RS in a Lightning ``training_step``: a Hugging Face TimeSformer on rsexp's synthetic
clips.

    python examples/lightning_module.py [--epochs 4] [--hf-path DIR]

The module keeps one :func:`rsexp.attention_tap` on its model for its lifetime; each
step reads the tapped attention of that step's forward and logs every RS term
(``train/loss``, ``train/loss/ce``, ``train/loss/spatial``, ``train/loss/temporal``)
per epoch. Needs ``lightning`` (rsexp's ``dev`` extra installs it).
"""

from __future__ import annotations

import lightning as L
import torch
from synthetic_clips import GRID, GuidedClips, parse_args, tiny_timesformer

import rsexp


class RSVideoModule(L.LightningModule):
    def __init__(self, model: torch.nn.Module, lr: float = 1e-3):
        super().__init__()
        self.model, self.lr = model, lr
        self.rs = rsexp.ReasoningSupervision(lambda_s=1.0, lambda_t=0.5, guidance_grid=GRID)
        self.tap = rsexp.attention_tap(model)  # [B, T, K] after each forward

    def training_step(self, batch, batch_idx):
        video, labels = batch["pixel_values"], batch["labels"]
        logits = self.model(pixel_values=video).logits
        views = self.rs.views(self.model, video)  # immediate / contextual logits
        terms = self.rs(logits, labels, self.tap.attn, batch["guidance"], views)
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, on_epoch=True, on_step=False)
        return terms["loss"]

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.lr)


class EpochTerms(L.Callback):
    """Keeps each epoch's logged RS terms (the test reads them)."""

    def __init__(self):
        self.history: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer, module):
        m = trainer.callback_metrics
        self.history.append({k[6:]: float(v) for k, v in m.items() if k.startswith("train/")})


def main(argv=None) -> list[dict[str, float]]:
    args = parse_args(__doc__, argv)
    L.seed_everything(0, verbose=False)
    loader = torch.utils.data.DataLoader(GuidedClips(args.clips), batch_size=16, shuffle=True)
    terms = EpochTerms()
    trainer = L.Trainer(
        max_epochs=args.epochs, accelerator="auto", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[terms],
    )  # fmt: skip
    trainer.fit(RSVideoModule(tiny_timesformer(args.hf_path), lr=args.lr), loader)
    for epoch, h in enumerate(terms.history, 1):
        print(f"epoch {epoch}: " + "  ".join(f"{k} {v:.4f}" for k, v in sorted(h.items())))
    return terms.history


if __name__ == "__main__":
    main()
