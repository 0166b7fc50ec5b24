"""Orbax checkpoints of a run: the last N states plus the best by held-out accuracy.

A checkpoint holds the whole PyTree (every network, optimizer states, step, base key) and
the grain iterator state, so a resumed run sees exactly the batches it would have seen. Orbax
writes into a temporary folder and renames it when complete: a process killed mid-write leaves
no checkpoint that a restart could pick up.
"""

import os

import orbax.checkpoint as ocp
from absl import logging

from fergan.processes import wait_for_processes
from fergan.types import PyTree

LATEST_DIR = "checkpoints"
BEST_DIR = "best"


def saved_steps(workdir: str, best: bool = False) -> list[int]:
    """Steps of the finished checkpoints in `<workdir>/checkpoints` (or `best`), read from the
    folder names without creating anything (Orbax names a save in progress `<step>.orbax-...`,
    so an interrupted write is not listed)."""
    folder = os.path.join(workdir, BEST_DIR if best else LATEST_DIR)
    if not os.path.isdir(folder):
        return []
    return sorted(int(name) for name in os.listdir(folder) if name.isdigit())


class Checkpoints:
    """`<workdir>/checkpoints` keeps the last `keep` saves; `<workdir>/best` the best accuracy."""

    def __init__(self, workdir: str, keep: int, asynchronous: bool = True):
        def manager(folder: str, **options) -> ocp.CheckpointManager:
            return ocp.CheckpointManager(
                os.path.abspath(os.path.join(workdir, folder)),
                options=ocp.CheckpointManagerOptions(
                    enable_async_checkpointing=asynchronous, create=True, **options
                ),
                item_names=("state", "data"),
            )

        wait_for_processes("checkpoints")  # Orbax's first sync is a gloo collective.
        self.latest = manager(LATEST_DIR, max_to_keep=keep)
        self.best = manager(
            BEST_DIR,
            max_to_keep=1,
            best_fn=lambda m: m["accuracy"],
            best_mode="max",
            keep_checkpoints_without_metrics=False,
        )

    @staticmethod
    def _args(state: PyTree, data_state: dict):
        return ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
        )

    def save(
        self, step: int, state: PyTree, data_state: dict, accuracy: float | None = None
    ) -> None:
        """Save host `state` after `step` iterations (asynchronously)."""
        self.latest.save(step, args=self._args(state, data_state), force=True)
        if accuracy is not None:
            # Multi-process saves synchronise on per-step barriers: the two managers must not
            # write the same step at once.
            self.latest.wait_until_finished()
            self.best.save(
                step, args=self._args(state, data_state), metrics={"accuracy": accuracy}, force=True
            )

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def restore(
        self, like: PyTree, step: int | None = None, best: bool = False
    ) -> tuple[PyTree, dict] | None:
        """(state, data iterator state) of `step` (default: the latest, or the best), or None."""
        manager = self.best if best else self.latest
        step = (manager.best_step() if best else manager.latest_step()) if step is None else step
        if step is None:
            return None
        logging.info("Restoring checkpoint %d from %s", step, manager.directory)
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(like), data=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], restored["data"]

    def wait(self) -> None:
        """Block until pending asynchronous saves are complete."""
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()
