"""Files in and out of a sandbox as tar streams over ``exec``, with the
CLI's meaning (docs/cli.md, "Sandboxes"): a directory lands as
``DEST/<name>/…``; a file goes to DEST exactly unless DEST ends with ``/``
or is a directory; a download never leaves the sandbox's workspace, and
what comes back is extracted without ever writing outside DEST."""

from __future__ import annotations

import io
import os
import posixpath
import stat
import tarfile
from pathlib import Path

# Unpacks the upload into the directory $1 (made when missing).
INTO_DIR = 'mkdir -p -- "$1" && tar xf - -C "$1"'

# Unpacks the upload (one file named $2) into $1 when that is a directory,
# else as the file $1: unpacked beside it, then renamed.
INTO_DIR_OR_AS = r"""set -e
if [ -d "$1" ]; then exec tar xf - -C "$1"; fi
parent=$(dirname -- "$1")
mkdir -p -- "$parent"
staging=$(mktemp -d -- "$parent/.openshell-upload.XXXXXX")
trap 'rm -rf -- "$staging"' EXIT
tar xf - -C "$staging"
mv -f -- "$staging/$2" "$1"
"""

# Resolves SRC inside the sandbox: `missing`; `outside <root>`, the real
# path and the path as written; or `dir|file` and the real path.
PROBE = r"""root=$(pwd -P) || exit 3
p=$(realpath -e -- "$1" 2>/dev/null) || { echo missing; exit 0; }
case "$p" in "$root"|"$root"/*) ;;
*) echo "outside $root"; printf '%s\n' "$p"; realpath -m -s -- "$1" 2>/dev/null || printf '%s\n' "$1"; exit 0;;
esac
if [ -d "$p" ]; then echo dir; else echo file; fi
printf '%s\n' "$p"
"""


def pack(local: Path) -> bytes:
    """A tar of ``local`` (a file or a tree, links kept as links) named by
    its base name."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(str(local), arcname=local.name, recursive=True)
    return buffer.getvalue()


def upload_command(local: Path, dest: str) -> list:
    if local.is_dir() and not local.is_symlink():
        return ["sh", "-c", INTO_DIR, "sh", dest]
    if dest.endswith("/"):
        return ["sh", "-c", INTO_DIR, "sh", dest]
    return ["sh", "-c", INTO_DIR_OR_AS, "sh", dest, local.name]


class UnsafeArchive(Exception):
    pass


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def extract(data: bytes, dest: Path) -> None:
    """Extracts a tar from a sandbox into ``dest``. Regular files,
    directories and links only; no member may land outside ``dest`` or be
    written through a link (a sandbox's archive is untrusted); links are
    created last, so none can redirect a later member."""
    root = os.path.realpath(dest)
    links = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            name = posixpath.normpath(member.name)
            if name in (".", ""):
                continue
            if name.startswith("/") or name == ".." or name.startswith("../"):
                raise UnsafeArchive(f"archive member {member.name!r} leaves the destination")
            target = os.path.join(root, *name.split("/"))
            parent = os.path.dirname(target)
            if not _inside(root, os.path.realpath(parent)):
                raise UnsafeArchive(f"archive member {member.name!r} would be written through a link")
            if member.isdir():
                os.makedirs(target, exist_ok=True)
                if os.path.islink(target):
                    raise UnsafeArchive(f"{member.name!r} is a link, not a directory")
                os.chmod(target, (member.mode & 0o777) | stat.S_IWUSR | stat.S_IXUSR | stat.S_IRUSR)
            elif member.isfile():
                os.makedirs(parent, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                if os.path.lexists(target):
                    if os.path.isdir(target) and not os.path.islink(target):
                        raise UnsafeArchive(f"{member.name!r} would replace a directory")
                    os.unlink(target)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, member.mode & 0o777 or 0o644)
                with os.fdopen(fd, "wb") as out:
                    while True:
                        chunk = source.read(1 << 20)
                        if not chunk:
                            break
                        out.write(chunk)
            elif member.issym():
                links.append((target, member.linkname))
            else:
                raise UnsafeArchive(f"archive member {member.name!r} is neither a file, a directory nor a link")
    for target, linkname in links:
        if os.path.lexists(target):
            os.unlink(target)
        os.symlink(linkname, target)
