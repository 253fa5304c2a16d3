"""What untrusted bytes are, and the sizes their header declares: read without Pillow, standard library only.

Intake asks this before Pillow sees the bytes, so a lying header is refused before anything is allocated for it.
"""

from __future__ import annotations

import re
import struct
import zlib

Size = tuple[int, int]

# (offset, magic, what it is): images Pillow reads under that format name.
_IMAGES = (
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
)
# Image formats we recognise but do not accept (unless the allowlist names them).
_OTHER_IMAGES = (
    (0, b"II*\x00", "TIFF", "a TIFF"),
    (0, b"MM\x00*", "TIFF", "a TIFF"),
    (0, b"8BPS", "PSD", "a Photoshop file (PSD)"),
    (0, b"\x00\x00\x01\x00", "ICO", "an icon (ICO)"),
    (0, b"\x00\x00\x02\x00", "CUR", "a cursor (CUR)"),
    (0, b"icns", "ICNS", "an icon (ICNS)"),
    (0, b"qoif", "QOI", "a QOI image"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000", "a JPEG 2000"),
    (0, b"\xffO\xffQ", "JPEG2000", "a JPEG 2000"),
    (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JXL", "a JPEG XL"),
    (0, b"\xff\x0a", "JXL", "a JPEG XL"),
    (0, b"%!PS", "EPS", "a PostScript file"),
    (0, b"\xc5\xd0\xd3\xc6", "EPS", "a PostScript file"),
)
# Common files that are not images at all, named in the refusal.
_NON_IMAGES = (
    (0, b"%PDF-", "a PDF"),
    (0, b"PK\x03\x04", "a ZIP archive"),
    (0, b"PK\x05\x06", "a ZIP archive"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (0, b"Rar!\x1a\x07", "a RAR archive"),
    (0, b"\xfd7zXZ\x00", "an XZ archive"),
    (0, b"BZh", "a bzip2 archive"),
    (0, b"\x1a\x45\xdf\xa3", "a video (WebM/MKV)"),
    (4, b"moov", "a video (MOV)"),
    (4, b"mdat", "a video (MOV)"),
    (0, b"OggS", "an audio or video file (Ogg)"),
    (0, b"fLaC", "an audio file (FLAC)"),
    (0, b"ID3", "an audio file (MP3)"),
    (0, b"\x7fELF", "a program"),
    (0, b"MZ", "a program"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Office document"),
    (0, b"{\\rtf", "a document (RTF)"),
    (0, b"SQLite format 3\x00", "a database"),
)
_BMP_HEADER_SIZES = (12, 16, 40, 52, 56, 64, 108, 124)
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
_AVIF_BRANDS = (b"avif", b"avis")

_GIF_TAGS = re.compile(rb"[,!;]")  # Pillow skips any other byte between a GIF's blocks
_CHUNK_TYPE = re.compile(rb"\w{4}")  # what Pillow accepts as a PNG chunk's type


def sniff(data: bytes) -> tuple[str, str, str] | None:
    """(kind, format, name) from magic bytes: kind is "image", "other" (an image we refuse) or "file"."""
    for offset, magic, fmt in _IMAGES:
        if data.startswith(magic, offset):
            return "image", fmt, f"a {fmt}"
    if data.startswith(b"BM") and len(data) >= 18 and struct.unpack("<I", data[14:18])[0] in _BMP_HEADER_SIZES:
        return "image", "BMP", "a BMP"
    if data.startswith(b"RIFF") and len(data) >= 12:
        kind = data[8:12]
        if kind == b"WEBP":
            return "image", "WEBP", "a WebP"
        if kind.startswith(b"AVI"):
            return "file", "", "a video (AVI)"
        if kind == b"WAVE":
            return "file", "", "an audio file (WAV)"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _AVIF_BRANDS:
            return "other", "AVIF", "an AVIF"
        if brand in _HEIF_BRANDS:
            return "other", "HEIF", "a HEIC photo"
        if brand.startswith(b"M4A"):
            return "file", "", "an audio file (M4A)"
        return "file", "", "a video (MP4/MOV)"
    for offset, magic, fmt, name in _OTHER_IMAGES:
        if data.startswith(magic, offset):
            return "other", fmt, name
    for offset, magic, name in _NON_IMAGES:
        if data.startswith(magic, offset):
            return "file", "", name
    text = _as_text(data[:4096])
    if text is None:
        return None
    head = text.lstrip().lower()
    if head.startswith("<!doctype html") or "<html" in head[:2048]:
        return "file", "", "a web page (HTML)"
    if "<svg" in head:
        return "other", "SVG", "an SVG drawing"
    if head.startswith("<"):
        return "file", "", "an XML document"
    if head.startswith(("{", "[")):
        return "file", "", "a text file (JSON)"
    return "file", "", "a text file"


CLIP_SUFFIXES = {
    "GIF": ".gif", "PNG": ".apng", "WEBP": ".webp", "a video (MP4/MOV)": ".mp4", "a video (WebM/MKV)": ".webm",
    "a video (MOV)": ".mov",
}  # fmt: skip


def clip_suffix(data: bytes) -> str | None:
    """The file suffix a clip's bytes call for (.gif, .apng, .webp, .mp4, .webm, .mov); None for a non-clip.

    From the magic bytes only: whether the clip decodes is for the decoder to say (engine/training/clips.py).
    """
    found = sniff(data)
    if found is None:
        return None
    kind, fmt, name = found
    return CLIP_SUFFIXES.get(fmt if kind == "image" else name)


def _as_text(head: bytes) -> str | None:
    """The decoded start of a text file, or None when the bytes look binary."""
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if head.startswith(bom):
            return head[len(bom) :].decode(codec, errors="ignore")
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # only a character cut at the end of the sample is allowed
            return None
        text = head[: exc.start].decode("utf-8")
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\n\r\f")
    return text if text and controls == 0 else None


def frame_sizes(data: bytes, fmt: str | None) -> list[Size]:
    """Every size the header declares: the canvas, then each frame's; empty for a format we don't parse."""
    try:
        if fmt == "GIF":
            return _gif_sizes(data)
        if fmt == "PNG":
            return _png_sizes(data)
        if fmt == "WEBP":
            return _webp_sizes(data)
        if fmt == "JPEG":
            return [size] if (size := _jpeg_size(data)) else []
        if fmt == "BMP" and struct.unpack("<I", data[14:18])[0] == 12:
            return [struct.unpack("<HH", data[18:22])]
        if fmt == "BMP":
            width, height = struct.unpack("<ii", data[18:26])
            return [(abs(width), abs(height))]
    except struct.error:  # a header cut short: Pillow names it damaged
        pass
    return []


def _gif_sizes(data: bytes) -> list[Size]:
    """The screen, then the canvas each frame needs: Pillow widens the canvas to a frame that overhangs it."""
    screen_w, screen_h, flags = struct.unpack("<HHB", data[6:11])
    sizes: list[Size] = [(screen_w, screen_h)]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while (tag := _GIF_TAGS.search(data, pos)) and tag.group() != b";":
        pos = tag.end()
        if tag.group() == b",":
            if pos + 9 > len(data):
                break
            x, y, width, height, flags = struct.unpack("<HHHHB", data[pos : pos + 9])
            sizes.append((max(screen_w, x + width), max(screen_h, y + height)))
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # descriptor, palette, LZW code size
        else:
            pos += 1  # an extension's label
        while pos < len(data) and data[pos]:  # the data sub-blocks, each led by its length
            pos += data[pos] + 1
        pos += 1
    return sizes


def _png_sizes(data: bytes) -> list[Size]:
    """IHDR's size, then each APNG frame's extent (fcTL); every chunk's checksum checked without a copy."""
    width, height = struct.unpack(">II", data[16:24])
    sizes: list[Size] = [(width, height)]
    view, pos = memoryview(data), 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 8 + length
        if not _CHUNK_TYPE.fullmatch(kind) or end + 4 > len(data) or zlib.crc32(view[pos + 4 : end]) != _u32(data, end):
            break
        if kind == b"fcTL" and length >= 26:
            width, height, x, y = struct.unpack(">IIII", data[pos + 12 : pos + 28])
            sizes.append((x + width, y + height))
        elif kind == b"IEND":
            return sizes
        pos = end + 4
    raise ValueError("a broken PNG chunk, or a PNG cut short")


def _webp_sizes(data: bytes) -> list[Size]:
    """The canvas (VP8X) or the bitstream's size (VP8, VP8L), then each animation frame's extent (ANMF)."""
    sizes: list[Size] = []
    pos = 12
    while pos + 8 <= len(data):
        kind, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        head = data[pos + 8 : pos + 8 + min(length, 16)]
        if kind == b"VP8X" and len(head) >= 10:
            sizes.append((_u24(head, 4) + 1, _u24(head, 7) + 1))
        elif kind == b"ANMF" and len(head) >= 12:
            sizes.append((2 * _u24(head, 0) + _u24(head, 6) + 1, 2 * _u24(head, 3) + _u24(head, 9) + 1))
        elif kind == b"VP8 " and len(head) >= 10 and head[3:6] == b"\x9d\x01\x2a":
            sizes.append((_u24(head, 6) & 0x3FFF, _u24(head, 8) & 0x3FFF))
        elif kind == b"VP8L" and len(head) >= 5 and head[0] == 0x2F:
            bits = int.from_bytes(head[1:5], "little")
            sizes.append(((bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1))
        pos += 8 + length + (length & 1)
    return sizes


def _u24(data: bytes, at: int) -> int:
    """A little-endian 24-bit number (VP8 sizes read 16 of them, masked)."""
    return int.from_bytes(data[at : at + 3], "little")


def _u32(data: bytes, at: int) -> int:
    """A big-endian 32-bit number (a PNG chunk's checksum)."""
    return int.from_bytes(data[at : at + 4], "big")


def _jpeg_size(data: bytes) -> Size | None:
    """The size in a JPEG's first start-of-frame marker."""
    i = 2
    while i + 9 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None
