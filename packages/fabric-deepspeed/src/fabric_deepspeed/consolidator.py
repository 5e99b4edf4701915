"""The ``deepspeed`` format of ``fabric consolidate``: a ZeRO checkpoint directory as one float32 file.

Imports nothing heavy: ``fabric consolidate`` imports every registered format to ask whether it
recognizes a directory; torch and deepspeed are imported only to consolidate.
"""

from __future__ import annotations

from pathlib import Path

from fabric_core.io.consolidate import CheckpointConsolidator


class DeepSpeedConsolidator(CheckpointConsolidator):
    """``fabric consolidate`` for DeepSpeed ZeRO checkpoint directories (written by fabric.save or DeepSpeed).

    The model's float32 weights are rebuilt from the ZeRO partitions by DeepSpeed's own ``zero_to_fp32``
    and stored under the model's key (``"model"`` unless the save named it otherwise), beside the other
    keys of the saved state; DeepSpeed's optimizer partitions are left out. ``fabric.load`` with
    ``DeepSpeedStrategy(load_full_weights=True)``, or plain ``torch.load``, reads the file.
    """

    def recognizes(self, path: Path) -> bool:
        if (path / "latest").is_file():
            return True
        return any(path.glob("*/*model_states.pt"))

    def consolidate(self, path: Path, output: Path) -> Path:
        import torch

        from fabric_core.io import atomic_torch_save
        from fabric_deepspeed.checkpoint import DEEPSPEED_KEYS, META_KEY

        if not path.is_dir():
            raise ValueError(f"'{path}' is not a DeepSpeed checkpoint directory: it does not exist.")
        tags = sorted(p.parent.name for p in path.glob("*/*model_states.pt"))
        tag = (path / "latest").read_text().strip() if (path / "latest").is_file() else (tags[0] if tags else None)
        if tag is None or not (path / tag).is_dir():
            raise ValueError(
                f"'{path}' is not a DeepSpeed checkpoint directory: no '*model_states.pt' file under a tag folder."
            )
        model_states = sorted((path / tag).glob("*mp_rank_00_model_states.pt"))
        if not model_states:
            raise ValueError(f"'{path / tag}' has no model states file (mp_rank_00_model_states.pt): it is incomplete.")
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        try:
            weights = get_fp32_state_dict_from_zero_checkpoint(str(path), tag=tag)
        except (FileNotFoundError, ValueError) as err:
            raise ValueError(f"DeepSpeed could not rebuild the weights of '{path / tag}': {err}") from err
        stored = torch.load(model_states[0], map_location="cpu", weights_only=False)
        meta = stored.get(META_KEY, {})
        result = {meta.get("model_key", "model"): dict(weights)}
        extra = meta.get("keys", sorted(set(stored) - DEEPSPEED_KEYS - {META_KEY}))
        result.update({key: stored[key] for key in extra if key in stored})
        atomic_torch_save(result, output)
        return output
