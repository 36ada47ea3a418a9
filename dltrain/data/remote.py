"""Tables and folders of files in object stores and on web servers (s3://, gs://, az://, https://),
read through fsspec.

A url is fetched into dltrain's cache (DLTRAIN_CACHE/remote/), keyed by the object's identity as
its store gives it: the ETag and version id (s3, gs, az), or a web server's ETag or Last-Modified
and size. A table is one file there, written atomically; a folder prefix is mirrored into one
cache folder, object by object, and a listing of the objects' identities says which are current.
The local readers then read the copy, so a whole or streamed table and a folder of class
subfolders read as they do from a disk. A fetch whose identities are unchanged reads nothing but
the store's metadata (one `info` for a file, one listing for a prefix).

Credentials come from each store's own environment variables and files, never from the config.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from dltrain.console import note
from dltrain.errors import DataError, first_line

if TYPE_CHECKING:
    from dltrain.data.sources import ResolvedSource

# the protocols dltrain reads through fsspec -> the package that gives fsspec each
PROTOCOLS = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "http": "aiohttp",
    "https": "aiohttp",
}
CREDENTIALS = {
    "s3fs": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE and ~/.aws/credentials; AWS_ENDPOINT_URL for another S3-compatible store)",
    "gcsfs": "GOOGLE_APPLICATION_CREDENTIALS (a service account's key file), or `gcloud auth application-default login`",
    "adlfs": "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN",
    "aiohttp": "nowhere: an http(s) url is read as it is (a presigned url carries its own signature, which may have expired)",
}
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_BATCH_FILES, _BATCH_BYTES = 256, 64 * 2**20  # a folder's objects are fetched this many (or bytes) at a time
_LISTING = "listing.json"


def is_remote(value: Any) -> bool:
    """Whether `value` is a url dltrain reads through fsspec (s3://, gs://, az://, abfs://, http(s)://)."""
    match = _SCHEME.match(value) if isinstance(value, str) else None
    return bool(match) and match[1].lower() in PROTOCOLS


def _protocol(url: str) -> str:
    return _SCHEME.match(url)[1].lower()


def _is_http(url: str) -> bool:
    return _protocol(url) in ("http", "https")


def name_of(url: str) -> str:
    """The file name a url ends in (no query string): what its type is told from."""
    path = urlsplit(url).path if _is_http(url) else url.split("://", 1)[1]
    return unquote(path.rstrip("/").rsplit("/", 1)[-1])


# ----- the file system, and its errors as DataErrors


def _filesystem(url: str):
    protocol = _protocol(url)
    package = PROTOCOLS[protocol]
    try:
        import fsspec
    except ImportError:
        raise DataError(f"{url}: reading {protocol}:// urls needs fsspec and {package}: pip install 'dltrain[remote]'") from None
    options: dict = {}
    if package == "s3fs":  # recent botocore reads these itself; older ones do not
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options["endpoint_url"] = endpoint
    try:
        fs = fsspec.filesystem(protocol, **options)
    except ImportError:
        raise DataError(f"{url}: reading {protocol}:// urls needs the {package} package: pip install {package} (or pip install 'dltrain[remote]')") from None
    except Exception as error:
        raise DataError(f"{url}: cannot open {protocol}:// ({first_line(error)})") from None
    fs.invalidate_cache()  # a listing kept from before says nothing of what is there now
    return fs


@contextmanager
def _talking(url: str) -> Iterator[None]:
    """Any problem with the store becomes a DataError that names the url and what to do."""
    package = PROTOCOLS[_protocol(url)]
    try:
        yield
    except DataError:
        raise
    except FileNotFoundError as error:
        said = first_line(error)
        if _is_http(url):
            status = _http_status(url)
            if status in (401, 403):
                raise DataError(_HTTP_DENIED.format(url=url, status=status)) from None
            if status is None:
                raise DataError(f"{url}: the server does not answer; check the url and that the server is up") from None
            raise DataError(f"{url}: not found on the server (HTTP {status}); check the url") from None
        if "bucket" in said.lower() or "container" in said.lower():
            raise DataError(f"{url}: no such bucket ({said}); check the url's bucket name and the store it is in") from None
        raise DataError(f"{url}: no such object; check the url (an object store's keys are case-sensitive)") from None
    except PermissionError as error:
        raise DataError(f"{url}: access denied ({first_line(error)}); dltrain reads credentials from {CREDENTIALS[package]}") from None
    except ImportError as error:
        raise DataError(f"{url}: a package it needs is missing ({first_line(error)}): pip install {package}") from None
    except Exception as error:  # botocore, aiohttp and the stores' SDKs raise their own types
        said = first_line(error)
        status = getattr(error, "status", None) or getattr(error, "code", None)
        if "credential" in type(error).__name__.lower() or "credential" in said.lower() or status in (401, 403):
            if _is_http(url):
                raise DataError(_HTTP_DENIED.format(url=url, status=status)) from None
            raise DataError(f"{url}: access denied or no credentials ({said}); dltrain reads credentials from {CREDENTIALS[package]}") from None
        if status == 404:
            raise DataError(f"{url}: no such object; check the url") from None
        raise DataError(f"{url}: cannot read it ({said})") from None


_HTTP_DENIED = (
    "{url}: access denied (HTTP {status}); dltrain reads an http(s) url as it is, with no credentials: "
    "give a url that needs none, or a presigned url that has not expired"
)


def _http_status(url: str) -> int | None:
    """The status a web server answers a HEAD of `url` with (fsspec says "not found" for any failure)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except Exception:  # no answer: the server is not there
        return None


def identity(info: dict) -> str | None:
    """An object's identity from its metadata: ETag and version, else Last-Modified and size; None
    where the store gives neither (a web server that sends no ETag and no Last-Modified)."""
    found = {str(k).lower(): v for k, v in info.items() if v not in (None, "")}
    etag = found.get("etag")
    version = found.get("versionid") or found.get("version_id") or found.get("generation")
    if etag is not None:
        text = str(etag).strip().removeprefix("W/").strip('"')
        return f"{text}@{version}" if version else text
    modified = found.get("last-modified") or found.get("lastmodified") or found.get("last_modified") or found.get("mtime")
    if modified is not None:
        return f"{version + '@' if version else ''}{modified}, {found.get('size')} bytes"
    return f"version {version}" if version else None


# ----- the cache


def _root(url: str) -> Path:
    from dltrain.data.media import cache_folder

    return cache_folder() / "remote" / hashlib.sha256(url.encode()).hexdigest()[:24]


def _key(identity: str) -> str:
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _safe_name(url: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name_of(url)).lstrip(".")
    return name or "data"


def _writable(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"the cache folder {folder} cannot be written ({error.strerror or error}): set DLTRAIN_CACHE to a folder that can") from None
    return folder


@contextmanager
def _atomic(path: Path) -> Iterator[str]:
    """A temporary name beside `path` to write to; renamed to `path` once written, removed if not."""
    _writable(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".dltrain-part-")
    os.close(handle)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


# ----- one file


def stat(url: str) -> tuple[Any, dict]:
    """The file system and the metadata of one object; a DataError when it is not there."""
    fs = _filesystem(url)
    with _talking(url):
        info = fs.info(url)
    return fs, info


def _fetch(fs, url: str, known: str | None) -> tuple[Path, str]:
    """Download `url` into the cache; returns the file and its identity (a hash of the bytes where
    the store gives none). Its entry replaces the url's earlier ones."""
    root = _writable(_root(url))
    handle, temporary = tempfile.mkstemp(dir=root, prefix=".dltrain-part-")
    os.close(handle)
    try:
        with _talking(url):
            fs.get_file(url, temporary)
            now = identity(fs.info(url)) if known is not None else None
        if known is not None and now != known:  # rewritten while it was read: the bytes may be half of each
            raise DataError(f"{url}: it changed while it was being downloaded ({known}, then {now}); run the command again")
        got = known or f"sha256:{_file_sha256(temporary)}"
        final = _writable(root / _key(got)) / _safe_name(url)
        os.replace(temporary, final)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    note(f"{url}: {final.stat().st_size / 2**20:.1f} MB downloaded into the cache ({final})")
    _prune(root, keep=final.parent.name)
    return final, got


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()[:32]


def _prune(root: Path, keep: str) -> None:
    """The url's other cache entries go: its object is another one now."""
    for entry in root.iterdir():
        if entry.is_dir() and entry.name not in (keep, "tree"):
            shutil.rmtree(entry, ignore_errors=True)


def file_identity(url: str) -> str:
    """The object's identity now (the url is fetched into the cache first where it has none)."""
    fs, info = stat(url)
    if info.get("type") == "directory":
        raise DataError(f"{url}: it is a folder (a prefix of objects), not a file; end it with / and give type: images, audio or video to read its class subfolders")
    found = identity(info)
    if found is None:
        found = _fetch(fs, url, None)[1]
    return found


def fetched_file(url: str, known: str | None) -> Path:
    """The cached copy of the object at `url`: no download when the cache holds `known` (its identity
    when resolved), else the object as it is now."""
    if known is not None:
        cached = _root(url) / _key(known) / _safe_name(url)
        if cached.is_file():
            return cached
    fs, info = stat(url)
    now = identity(info)
    if now is not None:
        cached = _root(url) / _key(now) / _safe_name(url)
        if cached.is_file():
            return cached
    return _fetch(fs, url, now)[0]


# ----- a folder prefix


def _listing(url: str) -> tuple[Any, dict[str, dict]]:
    """The objects under a prefix: {path relative to it: info}."""
    if _is_http(url):
        raise DataError(f"{url}: a web server's url names one file; a folder of class subfolders is read from an object store (s3://, gs://, az://) or a local folder")
    fs = _filesystem(url)
    with _talking(url):
        base = fs._strip_protocol(url).rstrip("/") + "/"
        found = fs.find(base, detail=True)
    media = _media_extensions()
    objects = {}
    for path, info in found.items():
        relative = path[len(base) :] if path.startswith(base) else None
        if not relative or info.get("type") == "directory" or ".." in relative.split("/") or relative.startswith(".") or "/." in relative:
            continue
        if relative.lower().endswith(media):  # images, sounds, clips: nothing else under the prefix is fetched
            objects[relative] = info
    if not objects:
        kinds = ", ".join(e.lstrip(".") for e in media)
        what = f"no images, sounds or clips under this prefix ({len(found)} other objects)" if found else "no files under this prefix"
        raise DataError(
            f"{url}: {what}; a folder source holds one subfolder per class of images, "
            f"sounds or clips ({url.rstrip('/')}/cat/1.png, {url.rstrip('/')}/dog/2.png, ...; {kinds})"
        )
    return fs, objects


def _media_extensions() -> tuple[str, ...]:
    from dltrain.data.audio import EXTENSIONS as AUDIO
    from dltrain.data.images import EXTENSIONS as IMAGES
    from dltrain.data.video import EXTENSIONS as VIDEO

    return IMAGES + AUDIO + VIDEO


def _listing_digest(identities: dict[str, str | None]) -> str:
    return hashlib.sha256(json.dumps(sorted(identities.items())).encode()).hexdigest()[:32]


def folder_identity(url: str) -> tuple[Path, str]:
    """Mirror the prefix into the cache (the objects that changed since its last mirroring) and
    return the local folder and the listing's identity."""
    fs, objects = _listing(url)
    identities = {relative: identity(info) for relative, info in objects.items()}
    root = _root(url)
    tree = root / "tree"
    listing_file = root / _LISTING
    try:
        kept = json.loads(listing_file.read_text())["objects"]
    except (OSError, ValueError, KeyError, TypeError):
        kept = {}
    wanted = [r for r, i in identities.items() if i is None or kept.get(r) != i or not (tree / r).is_file()]
    batch: list[str] = []
    size = 0
    for relative in [*wanted, None]:
        if relative is not None:
            batch.append(relative)
            size += int(objects[relative].get("size") or 0)
        if batch and (relative is None or len(batch) >= _BATCH_FILES or size >= _BATCH_BYTES):
            with _talking(url):
                contents = fs.cat([objects[r]["name"] for r in batch], on_error="raise")
            for r in batch:
                with _atomic(tree / r) as temporary:
                    Path(temporary).write_bytes(contents[objects[r]["name"]])
                if identities[r] is None:
                    identities[r] = "sha256:" + hashlib.sha256(contents[objects[r]["name"]]).hexdigest()[:32]
            batch, size = [], 0
    for relative in set(kept) - set(identities):  # gone from the store: gone from the mirror
        with _quiet():
            (tree / relative).unlink()
    if wanted:
        note(f"{url}: {len(wanted)} of {len(identities)} files downloaded into the cache ({tree})")
    digest = _listing_digest(identities)
    if wanted or set(kept) != set(identities) or _kept_digest(listing_file) != digest:
        with _atomic(listing_file) as temporary:
            Path(temporary).write_text(json.dumps({"url": url, "identity": digest, "objects": identities}))
    _writable(tree)
    return tree, digest


def _kept_digest(listing_file: Path) -> str | None:
    try:
        return json.loads(listing_file.read_text()).get("identity")
    except (OSError, ValueError, AttributeError):
        return None


@contextmanager
def _quiet() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass


def fetched_folder(url: str, known: str | None) -> Path:
    """The local mirror of a prefix: as it is, where its listing is still `known`; else mirrored again."""
    root = _root(url)
    if known is not None and _kept_digest(root / _LISTING) == known and (root / "tree").is_dir():
        return root / "tree"
    return folder_identity(url)[0]


def fetched_input(url: str) -> Path:
    """A url given on the command line (predict's rows or files, evaluate --data): the local copy to
    read, fetched into the cache as a source's is. One object is a file of the same name; a prefix
    (a url ending in /, or naming a folder in the store) is mirrored as a folder."""
    if not url.endswith("/"):
        _, info = stat(url)
        if info.get("type") != "directory":
            return fetched_file(url, identity(info))
    return folder_identity(url.rstrip("/") + "/")[0]


def remote_name(local: str, root: Path, url: str) -> str:
    """A file of a mirrored prefix (`root`, the mirror of `url`; or the one file fetched from it)
    named by its url, as predictions name their files."""
    try:
        relative = Path(local).relative_to(root)
    except ValueError:
        return local
    return url if str(relative) == "." else url.rstrip("/") + "/" + relative.as_posix()


# ----- sources


def resolve_remote(kind: str | None, url: str) -> ResolvedSource:
    """A url as a source: its type (from its name, or what a prefix holds) and identity now."""
    from dltrain.data.sources import FOLDER_TYPES, SOURCES, ResolvedSource, _folder_kind, kind_of

    if kind is None:
        kind = kind_of(name_of(url)) if not url.endswith("/") else None
    if kind == "sql":
        raise ValueError(f"{url}: an SQLite database is read from a local file; copy it here first")
    if kind is not None and kind not in SOURCES.entries:
        return ResolvedSource(kind, path=url)  # resolve_source says what types there are
    if kind is None or kind in FOLDER_TYPES:
        if kind is None and not url.endswith("/"):
            _, info = stat(url)
            if info.get("type") != "directory":
                raise ValueError(f"cannot tell the type of '{url}' from its name: give {{type: ..., path: {url}}} with a type of {', '.join(SOURCES.names())}")
        folder, digest = folder_identity(url)
        return ResolvedSource(kind or _folder_kind(folder), path=url, etag=digest)
    return ResolvedSource(kind, path=url, etag=file_identity(url))


def current(source: ResolvedSource) -> ResolvedSource:
    """A recorded source with its identity as it is now (evaluate and --resume read the data again)."""
    if not (source.path and is_remote(source.path)):
        return source
    from dltrain.data.sources import FOLDER_TYPES

    if source.type in FOLDER_TYPES:
        return replace(source, etag=folder_identity(source.path)[1])
    return replace(source, etag=file_identity(source.path))


def local_copy(source: ResolvedSource) -> ResolvedSource:
    """The source to read: a remote one as its cached copy (named by its url in messages)."""
    if not (source.path and is_remote(source.path)):
        return source
    from dltrain.data.sources import FOLDER_TYPES

    url = source.path
    local = fetched_folder(url, source.etag) if source.type in FOLDER_TYPES else fetched_file(url, source.etag)
    return replace(source, path=str(local), etag=None, origin=url)
