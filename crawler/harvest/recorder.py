"""The harvester's recorder: final tasks into the manifest and the progress log.

Guarantee: a final task's manifest line is on disk before the broker's watermark says
it was recorded (``mark_recorded`` after the flush), so a crash loses no line the
database thinks written; at a resume, the lines a crash may have left out are written
(``record_missing_lines``), and those already there are not written twice.
"""

from __future__ import annotations

from crawler.broker.board import Task, counted_attempts, final_record
from crawler.broker.broker import Broker
from crawler.metrics.base import HarvestMetrics, NoMetrics
from crawler.output.manifest import Manifest
from crawler.output.progress import ProgressLog
from crawler.records import STORED, Result
from crawler.stats import CrawlStats


class Recorder:
    """Writes what the broker finished; counts it into the crawl's ``stats``."""

    def __init__(
        self,
        broker: Broker,
        manifest: Manifest,
        log: ProgressLog,
        stats: CrawlStats,
        metrics: HarvestMetrics | None = None,
    ) -> None:
        self.broker = broker
        self.manifest = manifest
        self.log = log
        self.stats = stats
        self.metrics = metrics or NoMetrics()

    def record_updates(self) -> None:
        """Tasks that became final and node events since the last call, recorded."""
        finished, events = self.broker.take_updates()
        # One flush of each file per batch: a line per image flushed one by one was a
        # large share of the harvester's time (docs/design-notes.md). The broker's
        # watermark below is written only after the flush, so a crash loses no line the
        # database thinks recorded.
        with self.log.batch(), self.manifest.batch():
            for name, fields in events:
                self.log.event(name, **fields)
            for task in finished:
                self._record_task(task)
                self._count_task(task)
        if finished:
            self.broker.mark_recorded(finished, self.manifest.size())
        # Counted once written down: the metrics never run ahead of the manifest.
        for name, _ in events:
            self.metrics.node_event(name)
        for task in finished:
            self.metrics.image_final(task)

    def _count_task(self, task: Task) -> None:
        self.stats.count_image(task.state == STORED, task.result and task.result.bytes)

    def _record_task(self, task: Task) -> None:
        """Manifest line and log event for a final task (the totals are counted apart:
        at a resume they come from the database)."""
        if task.line is not None:
            self.manifest.write_line(task.line)
        else:  # read back from the database at a resume
            self.manifest.write(final_record(task).to_wire())
        result = task.result or Result(task.id, task.url)
        if task.state == STORED:
            self.log.event(
                "stored",
                url=task.url,
                bytes=result.bytes,
                node=result.node or None,
                path=result.path,
                elapsed=result.elapsed,
            )
        else:
            self.log.event(
                "failed",
                url=task.url,
                status=result.status,
                error=result.error,
                node=result.node or None,
                attempts=counted_attempts(task),
            )

    def record_missing_lines(self) -> None:
        """Tasks that finished just before a crash may lack their manifest line."""
        unrecorded = self.broker.unrecorded()
        if not unrecorded:
            return
        offset = self.broker.recorded_manifest_bytes()
        present = (
            self.manifest.recent_urls() if offset is None else self.manifest.urls_after(offset)
        )
        with self.manifest.batch():
            for task in unrecorded:
                if task.url not in present:
                    self._record_task(task)
        self.broker.mark_recorded(unrecorded, self.manifest.size())
