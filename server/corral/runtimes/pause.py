"""The pause image: the process that holds a container's network sandbox.

The docker runtime keeps one long-lived *sandbox* container per corral
container. It owns the network namespace and the published ports, and every
instance joins it (``NetworkMode: container:<sandbox>``), so a restart does
not wait on the engine creating and tearing down a network namespace, which
is most of a container start's time.

The sandbox needs a process that does nothing, runs in no particular image
and is never pulled (corral does not pull). This module writes one: a static
Linux executable of a few dozen instructions that blocks SIGTERM and SIGINT,
waits for either with ``rt_sigtimedwait`` and exits 0. Waiting on blocked
signals, rather than installing handlers, works as PID 1 of a container:
the kernel drops unhandled signals sent to a namespace's init, but queues
blocked ones. :func:`image_archive` wraps it in a ``docker save`` archive
that the engine loads as :data:`PAUSE_IMAGE`.

Programs exist for the engine architectures ``amd64`` and ``arm64``.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile
from collections.abc import Callable

__all__ = ["PAUSE_IMAGE", "SUPPORTED_ARCHITECTURES", "image_archive", "program"]

PAUSE_IMAGE = "corral-pause:1"
"""The local image the sandboxes run; its tag changes with the program."""

_BASE = 0x400000
"""Where the one loadable segment is mapped."""
_HEADERS = 64 + 56
"""An ELF64 header and one program header; the code follows them."""

_BLOCKED = (1 << (15 - 1)) | (1 << (2 - 1))
"""The signal set {SIGTERM, SIGINT}, as the kernel's 64-bit mask."""
_SIG_BLOCK = 0
_SIGSET_SIZE = 8


def _x86_64(mask_address: int) -> bytes:
    """rt_sigprocmask(SIG_BLOCK, mask); until rt_sigtimedwait(mask) >= 0; exit."""
    addr = struct.pack("<I", mask_address)
    code = b"".join(
        [
            b"\xbf" + struct.pack("<I", _SIG_BLOCK),  # mov edi, SIG_BLOCK
            b"\xbe" + addr,  # mov esi, mask
            b"\x31\xd2",  # xor edx, edx            (no old mask)
            b"\x41\xba" + struct.pack("<I", _SIGSET_SIZE),  # mov r10d, 8
            b"\xb8\x0e\x00\x00\x00",  # mov eax, 14  (rt_sigprocmask)
            b"\x0f\x05",  # syscall
            # wait: (offset 25)
            b"\xbf" + addr,  # mov edi, mask
            b"\x31\xf6",  # xor esi, esi            (no siginfo)
            b"\x31\xd2",  # xor edx, edx            (no timeout)
            b"\x41\xba" + struct.pack("<I", _SIGSET_SIZE),  # mov r10d, 8
            b"\xb8\x80\x00\x00\x00",  # mov eax, 128 (rt_sigtimedwait)
            b"\x0f\x05",  # syscall
            b"\x48\x85\xc0",  # test rax, rax
            b"\x78\xe5",  # js wait                 (interrupted: wait again)
            b"\x31\xff",  # xor edi, edi
            b"\xb8\xe7\x00\x00\x00",  # mov eax, 231 (exit_group)
            b"\x0f\x05",  # syscall
        ]
    )
    assert len(code) == 61, len(code)
    return code


def _arm64(mask_address: int) -> bytes:
    """The same program for AArch64 (generic syscall numbers)."""
    start = _BASE + _HEADERS

    def movz(register: int, value: int) -> int:
        return 0xD2800000 | (value << 5) | register

    def adr(register: int, at: int) -> int:
        offset = mask_address - (start + at)
        return (
            0x10000000
            | ((offset & 3) << 29)
            | (((offset >> 2) & 0x7FFFF) << 5)
            | register
        )

    svc = 0xD4000001
    words = [
        movz(0, _SIG_BLOCK),  # 0:  mov x0, SIG_BLOCK
        adr(1, 4),  # 4:  adr x1, mask
        movz(2, 0),  # 8:  mov x2, 0          (no old mask)
        movz(3, _SIGSET_SIZE),  # 12: mov x3, 8
        movz(8, 135),  # 16: mov x8, 135 (rt_sigprocmask)
        svc,  # 20: svc 0
        # wait: (offset 24)
        adr(0, 24),  # 24: adr x0, mask
        movz(1, 0),  # 28: mov x1, 0          (no siginfo)
        movz(2, 0),  # 32: mov x2, 0          (no timeout)
        movz(3, _SIGSET_SIZE),  # 36: mov x3, 8
        movz(8, 137),  # 40: mov x8, 137 (rt_sigtimedwait)
        svc,  # 44: svc 0
        # 48: tbnz x0, #63, wait  (negative: interrupted, wait again)
        0x80000000 | 0x37000000 | (31 << 19) | (((24 - 48) // 4 & 0x3FFF) << 5),
        movz(0, 0),  # 52: mov x0, 0
        movz(8, 94),  # 56: mov x8, 94 (exit_group)
        svc,  # 60: svc 0
    ]
    return struct.pack(f"<{len(words)}I", *words)


_PROGRAMS: dict[str, tuple[int, Callable[[int], bytes]]] = {
    "amd64": (62, _x86_64),  # EM_X86_64
    "arm64": (183, _arm64),  # EM_AARCH64
}
SUPPORTED_ARCHITECTURES = frozenset(_PROGRAMS)
"""Engine architectures (as ``docker version`` names them) with a program."""


def program(architecture: str) -> bytes:
    """The pause executable for an engine architecture.

    Raises:
        ValueError: no program exists for ``architecture``.
    """
    try:
        machine, assemble = _PROGRAMS[architecture]
    except KeyError:
        raise ValueError(
            f"no pause program for architecture {architecture!r}"
        ) from None

    code_size = 64  # Both programs fit; the mask follows at a fixed offset.
    mask_address = _BASE + _HEADERS + code_size
    code = assemble(mask_address).ljust(code_size, b"\0")
    size = _HEADERS + code_size + _SIGSET_SIZE
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, LE, SysV
    header = struct.pack(
        "<16sHHIQQQIHHHHHH",
        ident,
        2,  # ET_EXEC
        machine,
        1,  # EV_CURRENT
        _BASE + _HEADERS,  # entry: the code
        64,  # program headers right after this header
        0,  # no section headers
        0,
        64,
        56,
        1,
        0,
        0,
        0,
    )
    segment = struct.pack(
        "<IIQQQQQQ",
        1,  # PT_LOAD
        5,  # PF_R | PF_X
        0,
        _BASE,
        _BASE,
        size,
        size,
        0x1000,
    )
    return header + segment + code + struct.pack("<Q", _BLOCKED)


def image_archive(architecture: str) -> bytes:
    """A ``docker save`` archive of :data:`PAUSE_IMAGE` for ``architecture``.

    One layer holding ``/pause``; the image's entrypoint runs it.

    Raises:
        ValueError: no program exists for ``architecture``.
    """
    layer = _tar({"pause": (program(architecture), 0o555)})
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "Labels": {"corral.pause": "1"}},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        },
        sort_keys=True,
    ).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps(
        [
            {
                "Config": config_name,
                "RepoTags": [PAUSE_IMAGE],
                "Layers": [f"{layer_digest}/layer.tar"],
            }
        ]
    ).encode()

    return _tar(
        {
            f"{layer_digest}/layer.tar": (layer, 0o444),
            config_name: (config, 0o444),
            "manifest.json": (manifest, 0o444),
        }
    )


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    """An uncompressed tar of in-memory files, owned by root, time zero."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, (data, mode) in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))

    return buffer.getvalue()
