"""``fer-bench predict`` results as text for people, or CSV (one row per face or audio window)."""
from __future__ import annotations

import csv
import io


def _top(probs: dict | None) -> str:
    if not probs:
        return ""
    label = max(probs, key=probs.get)
    return f"{label} ({100 * probs[label]:.0f}%)"


def format_text(result: dict) -> str:
    lines = [f"Model: {result['model']} (trained on {result['dataset']}; classes: {', '.join(result['classes'])})"]
    for item in result["inputs"]:
        lines.append("")
        if item.get("error"):
            lines.append(f"{item['path']}: skipped: {item['error']}")
            continue
        head = f"{item['path']} [{item['type']}]"
        if item["type"] == "video":
            head += f", {len(item['frames'])} of {item.get('decoded_frames', '?')} frames analysed"
        lines.append(head + (f": {_top(item['probs'])}" if item.get("label") else ": no prediction"))
        if item.get("note"):
            lines.append(f"  note: {item['note']}")
        for frame in item["frames"]:
            when = "" if frame.get("time") is None else f"t={frame['time']:.2f}s "
            if "faces" not in frame:  # an audio window
                lines.append(f"  {when}({frame['duration']:.2f}s): {_top(frame['probs'])}")
            elif not frame["faces"]:
                lines.append(f"  {when}frame {frame['index']}: no face")
            else:
                faces = "; ".join(f"face at {[round(v) for v in f['box']]}: {_top(f['probs'])}" for f in frame["faces"])
                lines.append(f"  {when}frame {frame['index']}: {faces}")
    for note in result.get("notes", []):
        lines.append(f"\nnote: {note}")
    return "\n".join(lines)


def format_csv(result: dict) -> str:
    """One row per face (photos, video frames) or per audio window; inputs with no face or an
    error get one row saying so, so every input appears."""
    classes = result["classes"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "type", "frame", "time", "face", "x1", "y1", "x2", "y2", "label", *classes,
                     "clip_label", "note"])
    for item in result["inputs"]:
        clip = item.get("label") or ""
        base = [item["path"], item["type"]]
        if item.get("error") or not item["frames"]:
            writer.writerow(base + [""] * (8 + len(classes)) + [clip, item.get("error") or item.get("note", "")])
            continue
        for frame in item["frames"]:
            time = "" if frame.get("time") is None else frame["time"]
            if "faces" not in frame:
                writer.writerow(base + [frame["index"], time, "", "", "", "", "", frame["label"],
                                        *(f"{frame['probs'][c]:.6f}" for c in classes), clip, ""])
            elif not frame["faces"]:
                writer.writerow(base + [frame["index"], time] + [""] * (6 + len(classes)) + [clip, "no face"])
            for n, face in enumerate(frame.get("faces", [])):
                writer.writerow(base + [frame["index"], time, n, *face["box"], face["label"],
                                        *(f"{face['probs'][c]:.6f}" for c in classes), clip, ""])
    return out.getvalue()
