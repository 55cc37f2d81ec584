"""RS in a plain PyTorch loop: a Hugging Face TimeSformer on rsexp's synthetic clips.

    python examples/plain_pytorch_hf.py                      # a tiny random TimeSformer
    python examples/plain_pytorch_hf.py --hf-path DIR        # a save_pretrained folder

Everything RS needs comes from rsexp's public API: the attention of the last spatial
layer (``attention_tap``), the segment views (``ReasoningSupervision.views``), the
guidance masks of the frames each clip sampled (``guidance_masks``, in
``synthetic_clips.py``) and the loss terms (``ReasoningSupervision``). Prints one line
per epoch.
"""

from __future__ import annotations

import torch
from synthetic_clips import GRID, GuidedClips, parse_args, tiny_timesformer

import rsexp


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns each epoch's mean loss terms."""
    args = parse_args(__doc__, argv)
    torch.manual_seed(0)
    data = GuidedClips(args.clips)
    loader = torch.utils.data.DataLoader(data, batch_size=16, shuffle=True)
    model = tiny_timesformer(args.hf_path)
    rs = rsexp.ReasoningSupervision(lambda_s=1.0, lambda_t=0.5, tau=1.0, guidance_grid=GRID)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    history = []
    with rsexp.attention_tap(model, layer=-1) as tap:
        for epoch in range(1, args.epochs + 1):
            sums: dict[str, float] = {}
            for batch in loader:
                video, labels = batch["pixel_values"], batch["labels"]
                logits = model(pixel_values=video).logits  # [B, C]; tap.attn: [B, T, K]
                terms = rs(logits, labels, tap.attn, batch["guidance"], rs.views(model, video))
                opt.zero_grad()
                terms["loss"].backward()
                opt.step()
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(labels)
            history.append({k: v / len(data) for k, v in sums.items()})
            print(f"epoch {epoch}: " + "  ".join(f"{k} {v:.4f}" for k, v in history[-1].items()))
    return history


if __name__ == "__main__":
    main()
