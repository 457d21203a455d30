"""Run logging: `stats.jsonl` (one JSON object per logged step), optional TensorBoard scalars."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch


class RunLogger:
    """Appends to RUN/stats.jsonl; mirrors scalars to TensorBoard when it is installed."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.path = Path(run_dir) / "stats.jsonl"
        self.tb_dir = Path(run_dir) / "tensorboard"
        self.enabled = enabled
        self.tb = None
        self._tb_ready = False
        self._purge_step: int | None = None

    def _writer(self) -> Any:
        """The TensorBoard writer, made at the first record (None without the extra). After a
        `truncate_after(step)` it tells TensorBoard to drop the old events past that step too."""
        if not self._tb_ready:
            self._tb_ready = True
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.tb_dir), purge_step=self._purge_step)
            except ImportError:  # tensorboard is an optional extra
                self.tb = None
        return self.tb

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after `step` (left by a run killed after its last checkpoint)."""
        if not self.enabled:
            return
        self._purge_step = step + 1
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill
        self.path.write_text("".join(k + "\n" for k in kept))

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        tb = self._writer()
        if tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_stats(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "stats.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            warnings.warn(f"ignoring a malformed line in {path}", stacklevel=2)
    return out


def scalars(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """Detached scalar tensors -> floats (the only device sync of a logging step)."""
    if not terms:
        return {}
    names = list(terms)
    values = torch.stack([terms[n].detach().float().reshape(()) for n in names]).cpu().tolist()
    return dict(zip(names, values))
