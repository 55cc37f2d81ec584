"""RS in a plain PyTorch loop: a Hugging Face TimeSformer on rsexp's synthetic clips.

    python examples/plain_pytorch_hf.py                      # a tiny random TimeSformer
    python examples/plain_pytorch_hf.py --hf-path DIR        # a save_pretrained folder

Everything RS needs comes from rsexp's public API: the attention of the last spatial
layer (``attention_tap``), the segment views (``ReasoningSupervision.views``), the
guidance masks of the frames each clip sampled (``GuidanceStore``, ``guidance_masks``)
and the loss terms (``ReasoningSupervision``). Prints one line per epoch.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import transformers

import rsexp
from rsexp.data.synthetic import generate_split  # the example's data; yours goes here


def tiny_timesformer(num_classes: int, frames: int, size: int):
    config = transformers.TimesformerConfig(
        image_size=size, patch_size=8, num_frames=frames, hidden_size=64,
        num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        num_labels=num_classes,
    )  # fmt: skip
    return transformers.TimesformerForVideoClassification(config)


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns each epoch's mean loss terms."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hf-path", default="", help="a save_pretrained TimeSformer folder")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--clips", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    T, S, G, C = 8, 32, 4, 8
    data = generate_split(
        args.clips, num_frames=T, size=S, grid=G, num_classes=C, num_distractors=2,
        object_size=8, noise=8.0, seed=0, prefix="train",
    )  # fmt: skip
    # the guidance as rsexp stores it: key t = the t-th of T frames of each T-frame video
    store = rsexp.GuidanceStore.from_masks(data.video_ids, data.cells, grid=G)
    videos = torch.from_numpy(data.videos).permute(0, 1, 4, 2, 3).float() / 255.0
    videos = (videos - 0.45) / 0.225  # [V, T, 3, H, W]
    labels = torch.from_numpy(data.labels).long()

    if args.hf_path:
        model = transformers.TimesformerForVideoClassification.from_pretrained(
            args.hf_path, num_labels=C, ignore_mismatched_sizes=True, local_files_only=True
        )
    else:
        model = tiny_timesformer(C, T, S)
    rs = rsexp.ReasoningSupervision(lambda_s=1.0, lambda_t=0.5, tau=1.0, guidance_grid=G)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    frames = np.arange(T)  # the frames each clip sampled (all of them here)
    history = []
    with rsexp.attention_tap(model, layer=-1) as tap:
        for epoch in range(1, args.epochs + 1):
            sums: dict[str, float] = {}
            for idx in torch.randperm(len(labels)).split(16):
                video = videos[idx]
                ids = [data.video_ids[i] for i in idx]
                masks = rsexp.guidance_masks(store, ids, frames, lengths=[T] * len(ids))
                logits = model(pixel_values=video).logits  # [B, C]; tap.attn: [B, T, K]
                terms = rs(logits, labels[idx], tap.attn, masks, rs.views(model, video))
                opt.zero_grad()
                terms["loss"].backward()
                opt.step()
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(idx)
            history.append({k: v / len(labels) for k, v in sums.items()})
            print(f"epoch {epoch}: " + "  ".join(f"{k} {v:.4f}" for k, v in history[-1].items()))
    return history


if __name__ == "__main__":
    main()
