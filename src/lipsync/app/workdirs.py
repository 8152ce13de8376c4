"""Per-request temporary folders: every job reads and writes only inside its own folder.

Lifetime of what a request leaves on disk (the app's cleanup policy):

1. The job's folder (copies of the uploads, scratch files, the result and the side-by-side video) is
   created when the job starts and removed as soon as the page has received the result: Gradio copies
   returned files into its own cache while it builds the response, and the page then fires a follow-up
   event that deletes the folder. A failed job deletes its folder before the error is shown.
2. A folder whose follow-up never came (the tab was closed mid-job) is swept when it is older than
   ``max_age_s``; the sweep runs whenever a new job starts.
3. Gradio's cached copies (the uploads as received, the served results) are deleted by Gradio's own
   ``delete_cache`` after the same age, and all at server shutdown; :meth:`WorkDirs.close` removes
   the root of the job folders at shutdown too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path


class WorkDirs:
    """Creates, sweeps and removes the per-request folders under one root.

    Args:
        root: parent of the job folders; a fresh private temporary folder when None.
        max_age_s: age after which an abandoned job folder is swept.
    """

    def __init__(self, root: Path | None = None, max_age_s: float = 3600.0) -> None:
        if max_age_s <= 0:
            raise ValueError(f"max_age_s must be positive, got {max_age_s}")
        self.root = Path(tempfile.mkdtemp(prefix="lipsync-app-")) if root is None else Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s

    def new(self) -> Path:
        """A fresh, empty, private folder for one request (stale ones are swept first)."""
        self.sweep()
        return Path(tempfile.mkdtemp(prefix="job-", dir=self.root))

    def remove(self, folder: str | Path | None) -> None:
        """Delete one job folder; anything that is not a job folder under the root is left alone."""
        if not folder:
            return
        folder = Path(folder).resolve()
        if folder.parent != self.root.resolve() or not folder.name.startswith("job-"):
            raise ValueError(f"{folder} is not a job folder under {self.root}; refusing to delete it")
        shutil.rmtree(folder, ignore_errors=True)

    def sweep(self, now: float | None = None) -> list[Path]:
        """Remove job folders older than ``max_age_s``; returns the ones removed."""
        now = time.time() if now is None else now
        stale = [d for d in self.active() if now - d.stat().st_mtime > self.max_age_s]
        for folder in stale:
            shutil.rmtree(folder, ignore_errors=True)
        return stale

    def active(self) -> list[Path]:
        """Job folders currently on disk."""
        return sorted(d for d in self.root.glob("job-*") if d.is_dir())

    def close(self) -> None:
        """Remove the root and every job folder in it (server shutdown)."""
        shutil.rmtree(self.root, ignore_errors=True)


def place_input(src: str | Path, folder: Path) -> Path:
    """Put an input file into ``folder`` (created) under its own name: a hard link when possible, else a copy.

    The job then never depends on Gradio's upload cache, which Gradio's cleanup may empty while a job
    waits in the queue; keeping the name lets error messages name the file the user chose.
    """
    src = Path(src)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / src.name
    try:
        os.link(src, target)
    except OSError:  # another file system, or links not allowed there
        shutil.copyfile(src, target)
    return target
