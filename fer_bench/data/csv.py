"""Reader for `fer2013.csv` (columns `emotion,pixels,Usage`) and its `icml_face_data.csv` variant.

The full file is ~300 MB of text. The fast path splits it with bytes methods and parses the pixels
with numpy in chunks on a thread pool; it only accepts input it has fully checked (field counts,
digits and spaces only, 2,304 values per row). Anything else goes to the careful path (the csv
module, row by row), which reads quoted fields too and names the line and column of any problem.
"""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fer_bench.data.labels import FER2013_CLASSES, TRAIN, USAGE_TO_SPLIT
from fer_bench.utils.errors import DataError

N_PIXELS = 48 * 48
REQUIRED = ("emotion", "pixels")


def read_fer2013_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Parse the CSV into ``(images uint8 (N,48,48), labels, splits, notes)``.

    Raises:
        DataError: naming the file, the line and the column of the first problem found.
    """
    raw = path.read_bytes()
    fast = _fast_path(raw)
    if fast is not None:
        return fast
    text = _decode(path, raw)
    header, body = _split_header(text)
    columns = _columns(path, header)
    rows = body.splitlines()
    if rows and rows[-1] == "":
        rows.pop()
    if not rows:
        raise DataError(f"{path}: the file has a header but no data rows. Export the full CSV again.")
    fields = _fields(path, rows, columns)
    labels = _labels(path, fields["emotion"])
    splits, notes = _splits(path, fields.get("usage"), len(rows))
    images = _pixels(path, fields["pixels"])
    return images, labels, splits, notes


CHUNK_ROWS = 1024  # rows per numpy parse; chunks keep the working set small and run on 2+ threads
NOT_PIXEL = bytes(c for c in range(256) if c not in b"0123456789 ")


def _fast_path(raw: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]] | None:
    """Parse a well-formed unquoted CSV quickly; None (never an exception) for anything unusual."""
    if b'"' in raw or b"\x00" in raw[:4096]:
        return None
    lines = raw.split(b"\n")
    try:
        names = [c.strip().lower() for c in lines[0].decode("utf-8-sig").strip("\r").split(",")]
    except UnicodeDecodeError:
        return None
    if sorted(names) != ["emotion", "pixels", "usage"]:
        return None
    col_e, col_p, col_u = (names.index(c) for c in ("emotion", "pixels", "usage"))
    rows = [_three_fields(ln.rstrip(b"\r")) for ln in lines[1:] if ln.strip()]
    if not rows:
        return None
    try:
        labels = np.array([int(r[col_e]) for r in rows], dtype=np.int64)
        splits = np.array([USAGE_TO_SPLIT[r[col_u].strip().decode()] for r in rows], dtype=np.int8)
    except (ValueError, KeyError, UnicodeDecodeError):
        return None
    pixels = _fast_pixels([r[col_p] for r in rows])
    if pixels is None or labels.min() < 0 or labels.max() >= len(FER2013_CLASSES):
        return None
    return pixels, labels, splits, ()


def _three_fields(line: bytes) -> tuple[bytes, bytes, bytes]:
    # find/rfind stop at the first and last comma, so the 9 KB pixel field is not scanned here; a stray
    # comma inside the middle field is caught by the digits-and-spaces check of the pixels.
    i, j = line.find(b","), line.rfind(b",")
    return line[:i], line[i + 1 : j], line[j + 1 :]


def _fast_pixels(fields: list[bytes]) -> np.ndarray | None:
    chunks = [fields[i : i + CHUNK_ROWS] for i in range(0, len(fields), CHUNK_ROWS)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parts = list(pool.map(_parse_chunk, chunks))
    if any(p is None for p in parts):
        return None
    return np.concatenate(parts).reshape(len(fields), 48, 48)


def _parse_chunk(fields: list[bytes]) -> np.ndarray | None:
    blob = b" ".join(f.strip() for f in fields)
    if blob.translate(None, NOT_PIXEL) != blob or any(f.strip().count(b" ") != N_PIXELS - 1 for f in fields):
        return None
    values = np.fromstring(blob, dtype=np.uint16, sep=" ")  # noqa: NPY201 (text mode is not deprecated)
    if values.size != len(fields) * N_PIXELS or values.max(initial=0) > 255:
        return None
    return values.astype(np.uint8)


def _decode(path: Path, raw: bytes) -> str:
    if not raw.strip():
        raise DataError(f"{path}: the file is empty. Expected a CSV with header `emotion,pixels,Usage`.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not a text CSV (undecodable byte at offset {exc.start}). Is this the right file?"
        ) from None
    if "\x00" in text[:4096]:
        raise DataError(f"{path}: binary data, not a CSV. Expected a CSV with header `emotion,pixels,Usage`.")
    return text.replace("\r\n", "\n").replace("\r", "\n")  # Windows and old Mac line endings read as Unix ones


def _split_header(text: str) -> tuple[str, str]:
    header, _, body = text.partition("\n")
    return header.strip("\r"), body


def _columns(path: Path, header: str) -> dict[str, int]:
    # The icml_face_data.csv variant writes ' Usage' and ' pixels' with a leading space.
    names = [c.strip().lower() for c in next(csv.reader([header]))]
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        first = header[:60] + ("…" if len(header) > 60 else "")
        what = "no header row" if _looks_like_data(names) else f"missing column(s) {', '.join(missing)}"
        raise DataError(
            f"{path}, line 1: {what} (found {first!r}). Expected a header `emotion,pixels,Usage` "
            "(the FER2013 CSV; `icml_face_data.csv` with ` Usage`, ` pixels` also works)."
        )
    return {n: i for i, n in enumerate(names) if n in (*REQUIRED, "usage")}


def _looks_like_data(names: list[str]) -> bool:
    return bool(names) and names[0].isdigit()


def _fields(path: Path, rows: list[str], columns: dict[str, int]) -> dict[str, list[str]]:
    width = max(columns.values()) + 1
    out: dict[str, list[str]] = {k: [] for k in columns}
    for lineno, rec in enumerate(csv.reader(io.StringIO("\n".join(rows))), start=2):
        if len(rec) < width:
            raise DataError(
                f"{path}, line {lineno}: {len(rec)} field(s), expected at least {width} "
                "(the row is cut short: a truncated file?). Re-export the CSV."
            )
        for key, i in columns.items():
            out[key].append(rec[i])
    return out


def _labels(path: Path, values: list[str]) -> np.ndarray:
    arr = np.array(values)
    ok = np.char.isdigit(np.char.strip(arr))
    if ok.all():
        labels = np.char.strip(arr).astype(np.int64)
        ok = labels < len(FER2013_CLASSES)
        if ok.all():
            return labels
    line = int(np.flatnonzero(~ok)[0]) + 2
    raise DataError(
        f"{path}, line {line}, column emotion: label {values[line - 2]!r} is not an integer in 0..6 "
        f"({', '.join(f'{i}={c}' for i, c in enumerate(FER2013_CLASSES))}). Fix the row or drop it."
    )


def _splits(path: Path, usage: list[str] | None, n: int) -> tuple[np.ndarray, tuple[str, ...]]:
    if usage is None:
        note = "no Usage column: every row is treated as Training"
        return np.full(n, TRAIN, dtype=np.int8), (note,)
    arr = np.char.strip(np.array(usage))
    splits = np.full(len(arr), -1, dtype=np.int8)
    for name, split in USAGE_TO_SPLIT.items():
        splits[arr == name] = split
    bad = np.flatnonzero(splits < 0)
    if len(bad):
        raise DataError(
            f"{path}, line {bad[0] + 2}, column Usage: unknown value {usage[bad[0]]!r}. "
            f"Expected one of {', '.join(USAGE_TO_SPLIT)}."
        )
    return splits, ()


def _pixels(path: Path, values: list[str]) -> np.ndarray:
    # The same chunked parser as the fast path, after normalising whitespace (quoted or irregular fields).
    pixels = _fast_pixels([" ".join(v.split()).encode("ascii", errors="replace") for v in values])
    if pixels is not None:
        return pixels
    _explain_pixel_error(path, values)
    raise AssertionError("unreachable: the pixel check above found no bad row")  # pragma: no cover


def _explain_pixel_error(path: Path, values: list[str]) -> None:
    for i, v in enumerate(values):
        tokens = v.split()
        where = f"{path}, line {i + 2}, column pixels"
        if len(tokens) != N_PIXELS:
            raise DataError(f"{where}: {len(tokens)} values, expected {N_PIXELS} (48×48). Fix or drop the row.")
        for j, t in enumerate(tokens):
            if not t.isdigit() or int(t) > 255:
                raise DataError(f"{where}: value #{j + 1} {t!r} is not an integer in 0..255. Fix or drop the row.")


def write_fer2013_csv(data, path: Path) -> None:
    """Write the original `emotion,pixels,Usage` format (the data-path benchmark times the reader on it)."""
    usage = {0: "Training", 1: "PublicTest", 2: "PrivateTest", 3: "PublicTest"}
    text = np.array([str(v) for v in range(256)], dtype=object)  # one str per pixel value, looked up by index
    with path.open("w") as f:
        f.write("emotion,pixels,Usage\n")
        for img, label, split in zip(data.images, data.labels, data.splits, strict=True):
            f.write(f"{label},{' '.join(text[img.ravel()])},{usage[int(split)]}\n")
