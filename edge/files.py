"""Atomic writes (a reader never sees a half-written artifact at the output path), and the
checks commands make on the paths they are given before any work."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from types import FrameType

from edge.errors import EMPTY_FILE, InputError, ModelError, OutputError
from edge.interruption import raise_if_interrupted

#: What to do about a write that failed, by its errno (the ones a user's setup causes).
_WRITE_FIXES = {
    errno.ENOSPC: "free space on that disk or choose another output path",
    errno.EDQUOT: "free space within your disk quota or choose another output path",
    errno.EROFS: "that file system is mounted read-only; choose another output path",
    errno.EFBIG: ("the file is larger than that file system or this process's file size "
                  "limit (ulimit -f) allows; choose another output path or raise the limit"),
    errno.EACCES: "choose another output path, or make the folder writable",
    errno.EPERM: "choose another output path, or make the folder writable (it may be "
                 "immutable: lsattr)",
}
#: Of those, the ones only a write can meet (the others may come from reading an input).
_WRITE_ONLY_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def require_output_directory(path: Path, option: str = "") -> Path:
    """The folder `path` will be written into; an error naming it (and the `option` that gave
    it) when it does not exist. Commands call this before any work so a typo in -o fails at
    once."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        given = f" (of {option} {path})" if option else ""
        raise InputError(f"output directory {directory}{given} {_not_a_folder(directory)} "
                         "another output path")
    return directory


def _not_a_folder(folder: Path) -> str:
    """Why `folder` cannot be written into, and the start of the fix ("... another X")."""
    if folder.exists():
        return "is a file, not a folder; choose"
    return "does not exist; create it or choose"


def require_output_file(path: Path, option: str = "-o") -> Path:
    """`require_output_directory`, `path` is not a folder itself (a file is written there,
    not into it), and a file can be made in its folder."""
    directory = _file_folder(path, option)
    _require_writable(directory, f" (of {option} {path})")
    return directory


def require_onnx_name(path: Path, option: str = "-o") -> None:
    """InputError where a model is to be written under a name not ending in .onnx: edge (and
    the daemon's TensorRT runner) tell model files by their extension, so an ONNX model named
    `model.pt` would be read as PyTorch's and one named `model` refused."""
    if path.suffix.lower() != ".onnx":
        raise InputError(f"{option} {path}: the model written is ONNX, and model files are "
                         "told by their extension (a .pt is read as PyTorch's, the TensorRT "
                         f"runner takes only .onnx); name it {_onnx_name(path)}")


def _onnx_name(path: Path) -> Path:
    """`path` with .onnx for an extension of a model format (`m.onnx.pt` -> `m.onnx`), .onnx
    added to any other name."""
    model_suffixes = (*PYTORCH_SUFFIXES, *TENSORRT_ENGINE_SUFFIXES, ".tflite", ".pb")
    stem = path.with_suffix("") if path.suffix.lower() in model_suffixes else path
    return stem if stem.suffix.lower() == ".onnx" else stem.with_name(stem.name + ".onnx")


def _file_folder(path: Path, option: str) -> Path:
    directory = require_output_directory(path, option)
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder; name the file to write (in it or "
                         "elsewhere)")
    if path.exists() and not path.is_file():
        # a user check: `--cache /dev/null` (as root) replaced the device with a file
        raise InputError(f"{option} {path} is {_special_file_kind(path)}, not a file: writing "
                         "it would replace it with one; name a file to write")
    return directory


def _special_file_kind(path: Path) -> str:
    """What `path`, which exists and is neither a regular file nor a folder, is."""
    mode = path.stat().st_mode
    for test, kind in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _require_writable(folder: Path, given: str) -> None:
    """An error naming `folder` when no file can be made in it (no write permission, an
    immutable folder, a read-only mount), found before the work instead of when its result is
    written. Probed with an unnamed temporary file: root may write where the mode says not."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        fix = _WRITE_FIXES.get(exc.errno or 0, "choose another output path")
        # a folder that exists, yet no file made in it does: a virtual file system's (/proc)
        why = ("no file can be made there: a virtual file system, as /proc is"
               if exc.errno == errno.ENOENT and folder.is_dir() else exc.strerror)
        raise OutputError(f"output directory {folder}{given} cannot be written into "
                          f"({why}); {fix}") from exc


@contextlib.contextmanager
def write_failures_named(destinations: Sequence[Path]) -> Iterator[None]:
    """An OSError met while writing `destinations` (a disk that filled up, a folder made
    read-only meanwhile) as an `OutputError` naming them and the fix, instead of a traceback.
    The outputs are written whole or not at all, so the files at those paths keep their
    content. Errors that name a file outside the destinations' folders (an input read
    meanwhile) pass unchanged."""
    try:
        yield
    except OSError as exc:
        if not _met_writing(exc, destinations):
            raise
        fix = _WRITE_FIXES[exc.errno or 0]
        names = ", ".join(str(path) for path in destinations)
        raise OutputError(f"cannot write {names} ({exc.strerror}); {fix}. Nothing was written: "
                          "files already at those paths keep their content") from exc


def _met_writing(exc: OSError, destinations: Sequence[Path]) -> bool:
    if exc.errno in _WRITE_ONLY_ERRNOS:
        return True
    if exc.errno not in _WRITE_FIXES:
        return False
    if exc.filename is None:
        return True
    failed = Path(os.fsdecode(exc.filename)).absolute()
    return any(failed.is_relative_to(_existing_folder(path)) for path in destinations)


def _existing_folder(path: Path) -> Path:
    """The nearest folder above `path` that exists: where its temporary files are made."""
    folder = path.absolute().parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    return folder


def require_output_folder(path: Path, option: str) -> Path:
    """A folder a command writes files into (made when missing, inside an existing folder, so
    a mistyped path fails at once as -o does): an error when `path` is an existing file or its
    parent does not exist."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path} is a file; {option} names the folder to write into")
    parent = path.absolute().parent
    if not path.exists() and not parent.is_dir():
        shown = path.parent if str(path.parent) != "." else parent  # as given, like -o's
        raise InputError(f"output directory {shown} (of {option} {path}) "
                         f"{_not_a_folder(parent)} another folder")
    folder = path if path.is_dir() else path.parent  # as given: relative stays relative
    _require_writable(folder, f" (of {option} {path})")
    return path


def require_report_folder(path: Path, heading: str, option: str = "--report",
                          plots: Collection[str] = ()) -> Path:
    """`require_output_folder` for a report written as `path/index.md` starting with `heading`,
    with the files `plots` beside it: an index.md there that is not an earlier report of that
    kind (a user's notes, another report), or a file named as one of `plots` that no earlier
    report there shows (a user's own), is refused rather than written over."""
    require_output_folder(path, option)
    index = path / "index.md"
    earlier = ""
    if index.is_file():
        try:
            earlier = index.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise InputError(f"{option} {path}: cannot read its index.md ({exc.strerror})") \
                from exc
        if earlier.split("\n", 1)[0].rstrip("\r") != heading:
            raise InputError(f"{option} {path} holds an index.md that does not start "
                             f"'{heading}' as an earlier report of this kind does, and writing "
                             "the report would replace it; name another folder, or move that "
                             "file away")
    shown = set(files_shown(earlier))
    theirs = sorted(name for name in plots if name not in shown and (path / name).exists())
    if theirs:
        one = len(theirs) == 1
        raise InputError(f"{option} {path} holds {', '.join(theirs)}, named as the report's "
                         f"plots are, which no earlier report there shows: writing the report "
                         f"would replace {'it' if one else 'them'}; name another folder, or "
                         f"move {'that file' if one else 'those files'} away")
    return path


#: A file a markdown report links to, beside it: `![...](hist_0.png)`.
_LINKED_FILE = re.compile(r"\]\(([^)/\s]+)\)")


def files_shown(markdown: str) -> list[str]:
    """The files beside a markdown report that it links to, each once, in order."""
    return list(dict.fromkeys(_LINKED_FILE.findall(markdown)))


def refuse_overwriting(output: Path, source: Path, option: str = "-o") -> None:
    """Refuse an output path that names the input file: the result would replace its own
    source."""
    if same_file(output, source):
        raise InputError(f"{option} {output} is the input model itself; write the result to "
                         "another file")


def same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` name one file (the same path, or links to one file)."""
    return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))


def require_model_file(path: Path, key: str | None = None) -> None:
    """An error naming `path` when it is a folder, missing, empty or not readable by this
    process's user (under systemd the daemon runs as its own user, which a model copied in as
    root may not be readable by); `key`: the config key that gave it, named first."""
    if key is not None:
        try:
            require_model_file(path)
        except ModelError as exc:
            raise ModelError(f"{key}: {exc}") from None
        return
    head = b""
    try:
        with path.open("rb") as file:
            head = file.read(_HEAD_BYTES)
    except PermissionError:
        raise ModelError(f"model file {path} cannot be read by {running_user()}: permission "
                         "denied; give that user read access to it and its folders (chmod "
                         "a+r FILE, or chown it to the service's user)") from None
    except OSError:
        pass  # missing, a folder: said below
    if path.is_dir():
        raise ModelError(f"model {path} is a folder; pass the .onnx file that `edge convert` or "
                         "`edge calibrate` wrote")
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; check the path, or make a model "
                         "with `edge convert`")
    if path.stat().st_size == 0:
        raise ModelError(f"model file {path} {EMPTY_FILE}")
    onnx_like = head.startswith(ONNX_FIRST_BYTE)  # a model renamed .engine is still a model
    if head.startswith(b"ftrt") or (path.suffix.lower() in TENSORRT_ENGINE_SUFFIXES
                                    and not onnx_like):
        raise ModelError(f"{path} is a TensorRT engine, which edge builds itself: give the .onnx "
                         "model it was built from (what `edge convert` or `edge calibrate` "
                         "wrote); on a Jetson the daemon builds its engine from it and caches "
                         "it (model.engine_dir), or `edge build-engine MODEL.onnx` does")
    if head.startswith(b"TRT-"):
        raise ModelError(f"{path} is a TensorRT calibration cache, not a model: give the .onnx "
                         "model; a cache goes with it to `edge build-engine MODEL.onnx --cache "
                         "FILE`")
    other = _other_format(head) or _archive(path, head)
    if other is not None:  # a user check: a README and a photo read as ONNX files cut short
        what, fix = other
        raise ModelError(f"{path} is {what}, not a model: {fix or GIVE_THE_MODEL}")
    if head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_PROTOCOL_2):
        # a user check: a checkpoint given to edge calibrate read as an ONNX file cut short
        raise ModelError(f"{path} is a PyTorch file (a checkpoint or TorchScript), not an ONNX "
                         f"model: convert it first, `edge convert {path} --module FILE.py:Class "
                         "--input-size N -o MODEL.onnx` (TorchScript needs no --module), and "
                         "give the .onnx it writes")


#: What TensorRT's serialized engines are commonly named (trtexec --saveEngine, Ultralytics).
TENSORRT_ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
#: What PyTorch's checkpoints and TorchScript files are commonly named.
PYTORCH_SUFFIXES = (".pt", ".pth", ".torchscript")
#: How PyTorch's files begin: torch.save and TorchScript write zip archives (PyTorch 1.6 on),
#: older torch.save a pickle (protocol 2). An ONNX file begins with its ir_version field, 0x08.
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOL_2 = b"\x80\x02"


#: What to give instead of a file that is no model.
GIVE_THE_MODEL = "give the .onnx model that `edge convert` or `edge calibrate` wrote"
#: An ONNX file's first byte: its ir_version field's tag.
ONNX_FIRST_BYTE = b"\x08"
#: How gzip-compressed files begin.
GZIP_MAGIC = b"\x1f\x8b"
#: Byte-order marks of text files, and the codec of the text after each.
_TEXT_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
#: Bytes of a model file read to tell what it is when it is no model.
_HEAD_BYTES = 512
#: How image files begin, by the name of their format.
_IMAGE_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG", b"GIF8": "GIF", b"BM": "BMP"}


def _other_format(head: bytes) -> tuple[str, str | None] | None:
    """(what a file beginning with `head` is, the fix where it is not the usual one) where it
    is an image, text or gzip-compressed (an ONNX file begins with the byte 0x08 and holds
    binary data), else None."""
    kind = next((name for magic, name in _IMAGE_MAGIC.items() if head.startswith(magic)), None)
    if kind is not None:
        return f"a {kind} image", None
    if head.startswith(GZIP_MAGIC):
        return "a gzip-compressed file", "decompress it (gunzip) and give the .onnx inside"
    bom, codec = next(((b, c) for b, c in _TEXT_BOMS if head.startswith(b)), (b"", "utf-8"))
    if not head or head.startswith(ONNX_FIRST_BYTE) or (not bom and b"\0" in head):
        return None
    body = head[len(bom):]
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as exc:  # a character cut at the end of the bytes read
        if exc.start < len(body) - 3:
            return None
        text = body[:exc.start].decode(codec)
    if not all(char.isprintable() or char in "\t\r\n" for char in text):
        return None
    first = text.strip().splitlines()[0][:40] if text.strip() else ""
    return f"a text file (it begins {first!r})", None


def _archive(path: Path, head: bytes) -> tuple[str, str | None] | None:
    """(what, the fix) for a zip archive that is no PyTorch file (PyTorch's zips hold
    `data.pkl` or TorchScript's `constants.pkl`), naming a model inside it; None for any other
    file."""
    if not head.startswith(ZIP_MAGIC):
        return None
    import zipfile  # noqa: PLC0415 - only for a file that is a zip

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any(name.rpartition("/")[2] in ("data.pkl", "constants.pkl") for name in names):
        return None  # PyTorch's: said as such by the caller
    models = [name for name in names if name.lower().endswith(".onnx")]
    if models:
        return f"a zip archive holding {models[0]}", f"unzip it and give {models[0]}"
    return "a zip archive", None


def running_user() -> str:
    """This process's user, by name where the system knows it: `user edge (uid 998)`."""
    uid = os.getuid()
    try:
        import pwd  # noqa: PLC0415 - POSIX only

        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`."""
    directory = _file_folder(path, "output")  # OSError from here on (callers handle ENOSPC)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        raise_if_interrupted()  # one a finalizer swallowed: `path` stays as it was
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class StagedOutputs:
    """A command's outputs, written under temporary names beside their destinations and moved
    into place together by `publish()`, so an error or an interrupt part-way through the
    writing leaves every destination as it was (README: "written whole or not at all").

    `file(destination)` names the temporary file to write a destination's content to;
    `folder(destination, owned)` a temporary folder whose files `publish()` moves into the
    destination folder (made when missing); files there that match the `owned` patterns and
    were not staged again are left from an earlier run and removed, other files are kept.
    Leaving the `with` block without publishing removes whatever was staged."""

    def __init__(self) -> None:
        self._files: dict[Path, Path] = {}
        self._folders: dict[Path, Path] = {}
        self._owned: dict[Path, Sequence[str]] = {}

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for temporary in self._files.values():
            temporary.unlink(missing_ok=True)
        for temporary in self._folders.values():
            shutil.rmtree(temporary, ignore_errors=True)

    def file(self, destination: Path) -> Path:
        directory = _file_folder(destination, "output")
        fd, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp",
                                         dir=directory)
        os.close(fd)
        self._files[destination] = Path(temporary)
        return Path(temporary)

    def folder(self, destination: Path, owned: Sequence[str] = ()) -> Path:
        """`owned`: glob patterns (relative to `destination`) of the files this output writes
        there, so that a file an earlier run wrote and this one did not is removed."""
        # folders on the way are made by publish() only
        temporary = Path(tempfile.mkdtemp(prefix=f".{destination.name}.",
                                          dir=_existing_folder(destination)))
        self._folders[destination] = temporary
        self._owned[destination] = owned
        return temporary

    def publish(self) -> None:
        """Move every staged file into place (each an atomic rename, in the order staged); a
        Ctrl-C or SIGTERM meanwhile takes effect once all are in place."""
        raise_if_interrupted()  # one a finalizer swallowed: nothing is put in place
        with _signals_held():
            self._moved_into_place()

    def _moved_into_place(self) -> None:
        umask = os.umask(0)
        os.umask(umask)
        for destination, temporary in self._files.items():
            os.chmod(temporary, 0o666 & ~umask)  # mkstemp creates 0600; the usual file mode
            os.replace(temporary, destination)
        for destination, temporary in self._folders.items():
            destination.mkdir(parents=True, exist_ok=True)
            written = set()
            for staged in sorted(temporary.rglob("*")):
                if staged.is_file():
                    target = destination / staged.relative_to(temporary)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staged, target)
                    written.add(target)
            for pattern in self._owned.get(destination, ()):
                for stale in set(destination.glob(pattern)) - written:
                    if stale.is_file():
                        stale.unlink()
            shutil.rmtree(temporary, ignore_errors=True)
        self._files.clear()
        self._folders.clear()
        self._owned.clear()


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM received inside the block are handled after it, by the handlers
    they would have met (on the main thread, the only one that handles signals; elsewhere a
    no-op). Blocking them in the thread's signal mask would not do: the kernel hands a
    process's signal to any thread that does not block it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signum)

    previous = {each: signal.signal(each, hold) for each in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)
        if held:
            handler = previous[signal.Signals(held[0])]
            if callable(handler):
                handler(held[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(held[0])
