"""What the voice, video and audio-visual adapters share: finding the dataset under a data root,
walking it without crashing on unreadable folders or bad files, and filling the prep cache.

A subclass sets ``extensions`` and ``source`` and implements ``parse`` (file -> Sample or the
reason it does not fit the naming scheme).
"""
from __future__ import annotations

import time
from pathlib import Path

from ..errors import UserError
from .base import DatasetAdapter, IndexResult, PrepareReport, Sample, Skipped
from .media_index import walk_files
from .prep import audio as audio_prep
from .prep import video as video_prep
from .prep.media_cache import MediaError, entry_path, file_info, params_tag


class MediaAdapter(DatasetAdapter):
    extensions: tuple[str, ...] = (".wav",)
    source: str = ""  # where to get the dataset, for the wrong-layout message
    prep_size: int = 112  # video frames are cached at this size and resized per model

    def parse(self, path: Path, root: Path) -> Sample | str | None:
        """A Sample for a file of this dataset, the reason it does not fit the naming scheme, or
        None for a file of this dataset that this variant does not use."""
        raise NotImplementedError

    def layout_error(self, root: Path | None, detail: str) -> UserError:
        return UserError(f"{self.name}: {detail}; expected {self.expected_layout} under the data root "
                         f"(the dataset's folder or the folder containing it); get it from {self.source}")

    def index(self, root: Path | None, cache_dir: Path) -> IndexResult:
        if root is None:
            raise self.layout_error(root, "no data root given (--data-root or FER_BENCH_DATA)")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise self.layout_error(root, f"data root {str(root)!r} is not a folder")
        files, skipped = walk_files(root, self.extensions)
        parsed_samples: list[Sample] = []
        misnamed = 0
        for path in files:
            parsed = self.parse(path, root)
            if parsed is None:  # this dataset's file, but another variant's (e.g. video-only)
                continue
            if isinstance(parsed, str):
                misnamed += 1
                skipped.append(Skipped(str(path), parsed))
                continue
            parsed_samples.append(parsed)
        if not parsed_samples and (not files or misnamed == len(files)):
            found = f"found {len(files)} {'/'.join(self.extensions)} files, none named as expected" if files \
                else f"found no {'/'.join(self.extensions)} files under {str(root)!r}"
            raise self.layout_error(root, found)
        samples = []
        for sample in self.deduplicate(parsed_samples):  # before hashing: twins need no decode
            info = file_info(Path(sample.path), cache_dir, self.probe)
            if info["problem"]:
                skipped.append(Skipped(sample.path, info["problem"]))
                continue
            sample.meta["sha256"] = info["sha256"]
            samples.append(sample)
        return self.finish_index(IndexResult(samples, skipped))

    def deduplicate(self, samples: list[Sample]) -> list[Sample]:
        return samples

    def probe(self, path: Path) -> str | None:
        return video_prep.probe_video(path) if self.modality == "video" else audio_prep.probe_audio(path)

    # ---- prep cache ----
    def default_jobs(self, sample: Sample) -> list[tuple[str, Path, str, dict]]:
        """(kind, path, sha256, params) cache entries ``prepare`` fills for one sample."""
        jobs = []
        if self.modality in ("voice", "av"):
            audio_path = Path(sample.meta.get("audio", sample.path))
            sha = sample.meta.get("audio_sha256") if "audio" in sample.meta else sample.meta.get("sha256")
            for params in (audio_prep.feature_params("logmel", 64), audio_prep.feature_params("mfcc", 40)):
                jobs.append(("audio", audio_path, sha, params))
        if self.modality in ("video", "av"):
            jobs.append(("video", Path(sample.path), sample.meta.get("sha256"),
                         video_prep.video_params(16, self.prep_size)))
        return jobs

    def prepare(self, samples: list[Sample], root: Path | None, cache_dir: Path,
                progress: bool = True) -> PrepareReport:
        """Decode every sample once into the cache (log-mel 64, MFCC 40, 16 video frames)."""
        start = time.perf_counter()
        report = PrepareReport(total=len(samples))
        for n, sample in enumerate(samples, 1):
            for kind, path, sha, params in self.default_jobs(sample):
                sha = sha or file_info(path, cache_dir)["sha256"]
                entry = entry_path(cache_dir, params_tag(kind, params), sha)
                if entry.with_suffix(".failed").is_file():  # failed before: report, do not retry
                    report.skipped.append(Skipped(str(path), entry.with_suffix(".failed").read_text()))
                    continue
                if entry.is_file():
                    report.cached += 1
                    continue
                try:
                    if kind == "audio":
                        audio_prep.cached_features(path, cache_dir, params, sha)
                    else:
                        video_prep.cached_streams(path, cache_dir, params, sha)
                    report.computed += 1
                except MediaError as e:
                    report.skipped.append(Skipped(str(path), str(e)))
            if progress and (n % 50 == 0 or n == len(samples)):
                print(f"\r{self.name}: prepared {n}/{len(samples)}", end="\n" if n == len(samples) else "",
                      flush=True)
        report.seconds = time.perf_counter() - start
        return report
