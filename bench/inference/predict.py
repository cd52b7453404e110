"""``fer-bench predict``: a trained checkpoint on photos, videos and audio.

Faces are found by MTCNN and aligned by the same functions and settings that prepared the
training data (``bench.data.prep.faces``), then shaped by the model's ``eval_transform``
(``bench.data.transforms``), the transform its training and evaluation data went through, so a
face (or a voice window) is seen at predict time the way it was seen in training. Every face of every sampled frame
gets a label and probabilities; a video or utterance gets one label from
``fer_models.aggregate_clips``. Results are plain dicts in the JSON layout the README documents.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from bench.data.face_files import IMAGE_SUFFIXES
from bench.data.prep import audio as audio_prep
from bench.data.prep.faces import FaceAligner, FaceAlignSettings, active_settings, landmark_distances, warp_to_template
from bench.data.prep.media_cache import MediaError
from bench.data.prep.video import rgb_converter
from bench.data.transforms import VoiceTransform, eval_transform, voice_request, voice_window_starts
from bench.errors import UserError
from fer_models import InputSpec

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".flv", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".3gp")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus")
DEFAULT_FPS = 5.0


# ---- inputs ---------------------------------------------------------------------------------

def media_type(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES or suffix == ".webp":
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    return None


def expand_inputs(items: list[str]) -> list[Path]:
    """Files as given, and the media files inside given folders (sorted, not recursive). A path
    that does not exist stops the run before any work: it is a typo, not a bad file."""
    files: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and media_type(p))
            if not found:
                raise UserError(f"folder {item!r} holds no image, video or audio file")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"input {item!r} does not exist")
    return files


def read_image(path: Path) -> np.ndarray:
    """H x W x 3 uint8 RGB, upright per the EXIF orientation (phones store photos sideways)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except Exception as exc:
        raise MediaError(f"cannot read image {path.name} ({type(exc).__name__}: {exc})") from None


@dataclass
class VideoFrame:
    index: int
    time: float  # seconds from the first frame
    frame: object  # av.VideoFrame; converted to pixels only when someone needs them
    sampled: bool
    to_rgb: Callable[[object], np.ndarray]  # one swscale context for the whole video

    def rgb(self) -> np.ndarray:
        return self.to_rgb(self.frame)


class VideoFrames:
    """Decode every frame of a video (any codec FFmpeg has: H.264, HEVC, MPEG-4, FLV...), marking
    the ones due at ``fps`` (0: every frame), so a long video costs detection at ``fps`` only."""

    def __init__(self, path: Path, fps: float):
        import av

        self.path, self.fps = path, fps
        try:
            self.container = av.open(str(path))
        except Exception as exc:
            raise MediaError(f"cannot open video {path.name} ({type(exc).__name__}: {exc})") from None
        if not self.container.streams.video:
            self.container.close()
            raise MediaError(f"{path.name} has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"  # frame threads: HEVC decode is the slow part otherwise
        self.rate = self.stream.average_rate or self.stream.guessed_rate or 25
        self.truncated: str | None = None

    def __iter__(self) -> Iterator[VideoFrame]:
        import av

        period = 1.0 / self.fps if self.fps > 0 else 0.0
        due, start, to_rgb = 0.0, None, rgb_converter()
        try:
            for index, frame in enumerate(self.container.decode(self.stream)):
                t = float(frame.time) if frame.time is not None else index / float(self.rate)
                start = t if start is None else start
                t -= start
                sampled = t >= due - 1e-6
                if sampled:
                    while due <= t + 1e-6:
                        due += period if period else float("inf")
                    due = due if period else t  # every frame when fps is 0
                yield VideoFrame(index, t, frame, sampled, to_rgb)
        except av.error.FFmpegError as exc:
            # a damaged tail: keep what decoded, and say so
            self.truncated = f"decoding stopped early ({exc})"
        finally:
            self.container.close()


# ---- the model ------------------------------------------------------------------------------

@dataclass
class Face:
    box: list[float]  # x1, y1, x2, y2 in source pixels
    score: float  # MTCNN's face probability
    crop: np.ndarray  # aligned, crop_size x crop_size x 3
    distances: np.ndarray  # 10 landmark distances (for models with a landmark branch)


class Predictor:
    """A checkpoint plus what it needs at inference: class names, the face aligner with the
    training data's settings, voice normalisation, and the clip threshold."""

    def __init__(self, checkpoint_dir: str | Path, *, cache_dir: Path, data_root: str | None = None,
                 fps: float = DEFAULT_FPS, threshold: float | None = None, device: str = "cpu"):
        from bench.training.ensemble import load_model_or_ensemble

        if fps < 0:
            raise UserError(f"--fps must be >= 0 (0 = every frame), got {fps}")
        # with its scikit-learn head, if any; an ensemble folder: its members' averaged probabilities
        model, cfg, state = load_model_or_ensemble(checkpoint_dir)
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.cfg = cfg
        members = getattr(model, "member_names", None)
        self.name = f"ensemble({'+'.join(members)})" if members else cfg.model.name
        self.class_names = list(state["meta"].class_names)  # from the checkpoint: no dataset needed
        self.spec = model.input_spec
        self.kind = self.spec.modality
        self.fps = fps
        # the threshold chosen on the validation clips (clip datasets); else every part counts
        self.threshold = threshold if threshold is not None else float(state["extra"].get("clip_threshold", 0.0))
        self.cache_dir, self.data_root = Path(cache_dir), data_root or cfg.data.data_root
        self.notes: list[str] = []
        self.visual_spec = self.voice_spec = None
        if self.kind == "face":
            self.visual_spec = self.spec
        elif self.kind == "voice":
            self.voice_spec = self.spec
        elif self.kind == "av":
            self.visual_spec = InputSpec.from_dict(self.spec.extras["visual"])
            self.voice_spec = InputSpec.from_dict(self.spec.extras["voice"])
            if self.visual_spec.modality != "face":
                raise UserError(f"{self.name} reads {self.visual_spec.modality} clips; predict supports audio-visual "
                                f"models whose visual encoder is a face model")
        else:
            raise UserError(f"{self.name} is a {self.kind} model; predict supports face, voice and audio-visual "
                            f"(face + voice) models")
        # the transform training and evaluation applied (bench.data.transforms.eval_transform), with
        # the statistics it was fitted with on the training split, kept in the checkpoint
        transform = eval_transform(self.spec, image_size=cfg.data.image_size, cache_dir=self.cache_dir)
        self.fitted = bool(state["extra"].get("preprocessing"))
        if self.fitted:
            transform.load_state_dict(state["extra"]["preprocessing"])
        parts = transform.parts() if self.kind == "av" else {self.kind: (self.spec, transform)}
        self.face_transform = parts["visual" if self.kind == "av" else "face"][1] if self.visual_spec else None
        self._voice_transform: VoiceTransform | None = parts["voice"][1] if self.voice_spec else None
        if self.voice_spec is not None and self.voice_spec.extras.get("speaker_norm"):
            self.notes.append("the model was trained on speaker-normalised features; a single input has no "
                              "speaker statistics, so it is standardised with the training split's statistics")
        self._aligner: FaceAligner | None = None

    # -- faces --

    @property
    def align_settings(self) -> FaceAlignSettings:
        return active_settings(self.cache_dir, self.cfg.data.dataset)

    @property
    def aligner(self) -> FaceAligner:
        if self._aligner is None:  # MTCNN costs ~0.5 s to build: only for inputs with pictures
            self._aligner = FaceAligner(self.align_settings)
        return self._aligner

    def detect_faces(self, image: np.ndarray) -> list[Face]:
        """Every face MTCNN is confident about, each aligned onto the training template."""
        settings = self.aligner.settings
        found = self.aligner.detect(image)
        if found is None:
            return []
        faces = []
        for box, prob, pts in zip(*found):
            if prob is None or prob < settings.min_confidence:
                continue
            crop = warp_to_template(image, pts, settings)
            if crop is not None:
                faces.append(Face([round(float(v), 1) for v in box], float(prob), crop, landmark_distances(pts)))
        return faces

    def face_inputs(self, faces: list[Face]):
        """The model's input for these aligned faces (the training data's transform)."""
        return self.face_transform(np.stack([f.crop for f in faces]), np.stack([f.distances for f in faces]))

    # -- voice --

    def voice_request(self) -> tuple[dict, int | None, bool]:
        """(feature params, frames per window or None for one vector per file, channel dim)."""
        return voice_request(self.voice_spec, self.cache_dir)

    def voice_features(self, wave: np.ndarray) -> np.ndarray:
        """The wave's features as ``data prepare`` computes them: (bins, frames) for spectral/LLD
        inputs, one (D,) or (L, D) array for functionals and encoder layers (of the wave capped at
        the training length, as in training)."""
        params, frames, _ = self.voice_request()
        if frames is None and "max_seconds" in params:
            limit = int(params["max_seconds"] * params["sample_rate"])
            wave = audio_prep.fix_length(wave, limit) if len(wave) > limit else wave
        return audio_prep.features_from_wave(wave, params)

    def voice_transform(self, features: np.ndarray) -> VoiceTransform:
        """The training data's voice transform with the statistics it was fitted with, from the
        checkpoint. A checkpoint written before they were kept there fits them again on the
        training split, read through the prep cache; when that data is not here, on this input's
        own statistics, with a note."""
        if not self.fitted:
            self.fitted = True
            self._voice_transform = self._refit_voice(self._voice_transform, features)
        return self._voice_transform

    def _refit_voice(self, transform: VoiceTransform, features: np.ndarray) -> VoiceTransform:
        from bench.data import load_splits

        try:
            _, _, splits = load_splits(self.cfg.data.dataset, self.cfg.data.fold, self.data_root, self.cache_dir)
            train = [audio_prep.cached_features(Path(s.meta.get("audio", s.path)), self.cache_dir, transform.params,
                                                s.meta.get("audio_sha256" if "audio" in s.meta else "sha256"))
                     for s in splits["train"]]
            return transform.fit(train, [s.subject for s in splits["train"]])
        except (UserError, MediaError, OSError) as exc:
            self.notes.append(f"the training data of {self.cfg.data.dataset!r} is not available ({exc}); voice "
                              f"features are standardised with each input's own statistics instead")
            if transform.per_file:
                zeros, ones = np.zeros_like(features, dtype=np.float32), np.ones_like(features, dtype=np.float32)
                transform.mean, transform.std, transform.raw_mean, transform.raw_std = zeros, ones, zeros, ones
                return transform
            return transform.fit([features])

    def voice_windows(self, features: np.ndarray, starts: list[int]) -> torch.Tensor:
        return self.voice_transform(features).windows([features], [starts])

    def window_starts(self, length: int) -> list[int]:
        """Where an utterance is cut (the same cut tunes the clip threshold on validation)."""
        frames = self.voice_request()[1]
        return [0] if frames is None else voice_window_starts(length, frames)

    def load_wave(self, path: Path) -> np.ndarray:
        return audio_prep.load_audio(path, self.voice_spec.sample_rate or audio_prep.SAMPLE_RATE)

    # -- the network --

    @torch.no_grad()
    def probabilities(self, x) -> np.ndarray:
        x = {k: v.to(self.device) for k, v in x.items()} if isinstance(x, dict) else x.to(self.device)
        logits = self.model(x)["logits"].double()
        return torch.softmax(logits, dim=1).cpu().numpy()

    def describe(self, probs: np.ndarray) -> tuple[str, dict[str, float]]:
        return self.class_names[int(probs.argmax())], {c: float(p) for c, p in zip(self.class_names, probs)}

    def clip_summary(self, per_part: list[np.ndarray]) -> dict:
        """The clip's label from its parts' probabilities (frames' main faces, audio windows)."""
        if not per_part:
            return {"label": None, "probs": None}
        from fer_models import aggregate_clips

        _, probs = aggregate_clips(np.stack(per_part), self.threshold)
        label, named = self.describe(probs / probs.sum())
        return {"label": label, "probs": named}


# ---- one input ------------------------------------------------------------------------------


def _face_entries(predictor: Predictor, faces: list[Face], voice=None) -> tuple[list[dict], np.ndarray | None]:
    """Per-face results (largest face first) and the largest face's probabilities."""
    if not faces:
        return [], None
    faces = sorted(faces, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    x = predictor.face_inputs(faces)
    if voice is not None:  # every face of the frame hears the same audio window
        x = {"visual": x, "voice": voice.expand(len(faces), *voice.shape[1:])}
    probs = predictor.probabilities(x)
    entries = []
    for face, p in zip(faces, probs):
        label, named = predictor.describe(p)
        entries.append({"box": face.box, "score": round(face.score, 4), "label": label, "probs": named})
    return entries, probs[0]


def predict_image(predictor: Predictor, path: Path) -> dict:
    if predictor.kind != "face":
        raise MediaError(f"{path.name} is a photo; {predictor.name} is a {predictor.kind} model and needs "
                         f"{'audio' if predictor.kind == 'voice' else 'a video with sound'}")
    faces, main = _face_entries(predictor, predictor.detect_faces(read_image(path)))
    frame = {"index": 0, "time": None, "faces": faces}
    if not faces:
        frame["note"] = "no face found"
    return {"frames": [frame], **predictor.clip_summary([main] if main is not None else [])}


def predict_audio(predictor: Predictor, path: Path) -> dict:
    if predictor.kind != "voice":
        raise MediaError(f"{path.name} is audio only; {predictor.name} is a {predictor.kind} model and needs pictures")
    wave = predictor.load_wave(path)
    features = predictor.voice_features(wave)
    starts = predictor.window_starts(features.shape[1] if features.ndim == 2 else 0)
    probs = predictor.probabilities(predictor.voice_windows(features, starts))
    rate = predictor.voice_spec.sample_rate or audio_prep.SAMPLE_RATE
    hop_s = audio_prep.HOP / rate
    # one vector per file (functionals, encoder layers): the one "window" is the whole wave
    frames_per_window = _window_frames(predictor) or len(wave) / rate / hop_s
    segments = []
    for i, (start, p) in enumerate(zip(starts, probs)):
        label, named = predictor.describe(p)
        segments.append({"index": i, "time": round(start * hop_s, 3), "duration": round(frames_per_window * hop_s, 3),
                         "label": label, "probs": named})
    return {"frames": segments, **predictor.clip_summary(list(probs))}


def _window_frames(predictor: Predictor) -> int | None:
    return predictor.voice_request()[1]


class FrameSink(Protocol):
    """Receives every decoded frame of a video with the faces to show on it (``bench.inference.annotate``)."""

    def write(self, rgb: np.ndarray, faces: list[dict]) -> None: ...

    def close(self) -> None: ...


SinkFactory = Callable[[Path, "VideoFrames"], FrameSink]


def predict_video(predictor: Predictor, path: Path, sink_for: SinkFactory | None = None) -> dict:
    """Faces of the frames due at ``predictor.fps``; with ``sink_for``, every decoded frame is
    passed on with the latest sampled frame's faces (an annotated copy keeps the source's rate)."""
    if predictor.kind == "voice":
        return predict_audio(predictor, path)  # a voice model hears the video's sound track
    video = VideoFrames(path, predictor.fps)
    features, frames_per_window = None, 0
    hop_s = audio_prep.HOP / ((predictor.voice_spec and predictor.voice_spec.sample_rate) or audio_prep.SAMPLE_RATE)
    if predictor.kind == "av":
        try:
            features = predictor.voice_features(predictor.load_wave(path))
        except MediaError:
            raise MediaError(f"{path.name} has no usable audio track; {predictor.name} needs sound and pictures") \
                from None
        frames_per_window = _window_frames(predictor)

    def window_at(t: float) -> int:  # the audio window centred on the frame's time
        if not frames_per_window:  # one vector per file: every frame hears the whole track
            return 0
        start = int(round(t / hop_s)) - frames_per_window // 2
        return int(np.clip(start, 0, max(features.shape[1] - frames_per_window, 0)))

    sink = sink_for(path, video) if sink_for is not None else None
    frames, mains, shown, decoded = [], [], [], 0
    try:
        for vf in video:
            decoded += 1
            rgb = None
            if vf.sampled:
                rgb = vf.rgb()
                voice = predictor.voice_windows(features, [window_at(vf.time)]) if features is not None else None
                shown, main = _face_entries(predictor, predictor.detect_faces(rgb), voice)
                entry = {"index": vf.index, "time": round(vf.time, 3), "faces": shown}
                if shown:
                    mains.append(main)
                else:
                    entry["note"] = "no face found"
                frames.append(entry)
            if sink is not None:
                sink.write(rgb if rgb is not None else vf.rgb(), shown)
    finally:
        if sink is not None:
            sink.close()
    if not frames:
        raise MediaError(f"no decodable video frame in {path.name}")
    result = {"frames": frames, **predictor.clip_summary(mains), "decoded_frames": decoded,
              "frame_rate": round(float(video.rate), 3)}
    notes = [video.truncated] if video.truncated else []
    if not mains:
        notes.append("no face found in any sampled frame")
    if notes:
        result["note"] = "; ".join(notes)
    return result


def predict_file(predictor: Predictor, path: Path, sink_for: SinkFactory | None = None) -> dict:
    """One input's result; an unreadable file gives ``{"error": ...}`` instead of stopping the run."""
    kind = media_type(path) or _probe_kind(path)
    entry = {"path": str(path), "type": kind}
    try:
        if kind == "image":
            entry.update(predict_image(predictor, path))
        elif kind == "audio":
            entry.update(predict_audio(predictor, path))
        elif kind == "video":
            entry.update(predict_video(predictor, path, sink_for))
            if predictor.kind == "voice":
                entry["type"] = "audio"
        else:
            raise MediaError(f"{path.name} is not an image, video or audio file this tool reads")
    except MediaError as exc:
        entry.update({"frames": [], "label": None, "probs": None, "error": str(exc)})
    return entry


def _probe_kind(path: Path) -> str | None:
    """Files without a telling suffix: ask FFmpeg what streams they hold."""
    import av

    try:
        with av.open(str(path)) as container:
            return "video" if container.streams.video else "audio" if container.streams.audio else None
    except Exception:
        return None


def predict(predictor: Predictor, files: list[Path], sink_for: SinkFactory | None = None) -> dict:
    """The whole run as one JSON-ready dict (layout in the README)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyAV/torch chatter would drown the results
        inputs = [predict_file(predictor, f, sink_for) for f in files]
    out = {"model": predictor.name, "dataset": predictor.cfg.data.dataset, "classes": predictor.class_names,
           "threshold": predictor.threshold, "fps": predictor.fps, "inputs": inputs}
    if predictor.notes:
        out["notes"] = list(dict.fromkeys(predictor.notes))
    return out
