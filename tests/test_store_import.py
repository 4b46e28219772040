"""Import by path: only regular files inside the configured roots, checked after resolving."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from l1web.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge


@pytest.fixture()
def root(tmp_path):
    root = tmp_path / "imports"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "clip.bin").write_bytes(b"importable bytes")
    return root


def test_a_regular_file_inside_a_root_is_imported_and_kept(store, root):
    source = root / "sub" / "clip.bin"
    stored = store.import_path(str(source), [root], owner="admin")
    assert stored.digest == hashlib.sha3_256(b"importable bytes").hexdigest()
    assert stored.meta.source == f"import:{source}" and stored.meta.owner == "admin"
    assert source.exists()


def test_dot_dot_that_stays_inside_the_root_is_fine(store, root):
    assert store.import_path(str(root / "sub" / ".." / "sub" / "clip.bin"), [root]).new


@pytest.mark.parametrize("path", ["/etc/passwd", "/proc/self/environ", "/dev/zero"])
def test_paths_outside_the_roots_are_forbidden(store, root, state, path):
    with pytest.raises(Forbidden):
        store.import_path(path, [root])
    assert state.cache.count() == 0


def test_traversal_out_of_the_root_is_forbidden(store, root):
    with pytest.raises(Forbidden):
        store.import_path(str(root / ".." / ".." / ".." / "etc" / "passwd"), [root])


def test_a_symlink_escaping_the_root_is_forbidden(store, root):
    (root / "escape").symlink_to("/etc/passwd")
    with pytest.raises(Forbidden):
        store.import_path(str(root / "escape"), [root])


def test_a_symlinked_directory_escaping_the_root_is_forbidden(store, root):
    (root / "etc").symlink_to("/etc")
    with pytest.raises(Forbidden):
        store.import_path(str(root / "etc" / "passwd"), [root])


def test_a_directory_is_refused(store, root):
    with pytest.raises(BadRequest, match="not a regular file"):
        store.import_path(str(root / "sub"), [root])


def test_a_fifo_is_refused_without_hanging(store, root):
    fifo = root / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(BadRequest, match="not a regular file"):
        store.import_path(str(fifo), [root])


def test_a_device_is_refused(store):
    with pytest.raises(BadRequest, match="not a regular file"):
        store.import_path("/dev/null", ["/dev"])


def test_a_device_node_inside_a_root_is_refused(store, root):
    node = root / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod not permitted here")
    with pytest.raises(BadRequest, match="not a regular file"):
        store.import_path(str(node), [root])


def test_no_roots_means_import_is_disabled(store, root):
    with pytest.raises(Forbidden, match="disabled"):
        store.import_path(str(root / "sub" / "clip.bin"), [])


def test_relative_paths_and_nul_bytes_are_refused(store, root):
    with pytest.raises(BadRequest):
        store.import_path("sub/clip.bin", [root])
    with pytest.raises(BadRequest):
        store.import_path(str(root / "sub" / "clip.bin\x00.png"), [root])


def test_a_missing_file_inside_a_root_is_not_found(store, root):
    with pytest.raises(NotFound):
        store.import_path(str(root / "nope.bin"), [root])


def test_an_oversized_file_is_refused(store, root, state):
    with pytest.raises(PayloadTooLarge):
        store.import_path(str(root / "sub" / "clip.bin"), [root], max_bytes=4)
    assert state.cache.count() == 0 and list(store.tmp.iterdir()) == []
